"""Checkpoints: everything a stopped run needs to continue, written so that a crash never leaves a half one."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qarac_gui.core.errors import UserError

MANIFEST = "manifest.json"
PREFIX = "step-"


class CheckpointError(UserError):
    """A checkpoint could not be written (most often: the disk is full)."""


@dataclass
class TrainState:
    """The trainer's own counters; saved as JSON beside the tensors."""
    step: int = 0
    best_value: float | None = None
    best_step: int = 0
    evals_without_improvement: int = 0
    eval_history: list[dict] = field(default_factory=list)
    skipped_in_a_row: int = 0       # steps skipped for a non-finite loss or gradient, up to the last one
    skipped_total: int = 0
    lr_scale: float = 1.0           # product of the roll-backs' lr factors
    micro_split: int = 1            # each batch is cut into this many micro-batches (after running out of memory)


def rng_state() -> dict:
    np_state = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }


def set_rng_state(state: dict, torch_states: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch_states["cpu"])
    if torch.cuda.is_available() and torch_states.get("cuda"):
        torch.cuda.set_rng_state_all(torch_states["cuda"])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(folder: Path, *, model: Any, optimizer: Any, scheduler: Any, scaler: Any,
                    stream: Any, state: TrainState, keep: int) -> Path:
    """Write into a temporary folder, fsync, write the manifest last, then rename into place.

    A write that fails (a full disk) removes its temporary folder and leaves every earlier checkpoint as it was.
    """
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{PREFIX}{state.step:08d}"
    tmp = folder / f".tmp-{PREFIX}{state.step:08d}"
    try:
        _write(tmp, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, stream=stream, state=state)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(folder)
    except OSError as e:
        previous, _ = latest_checkpoint(folder)
        size = _size(previous) if previous else _size(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        after = (f"the run can continue from the checkpoint of step {int(previous.name[len(PREFIX):])}"
                 if previous else "the run has no earlier checkpoint")
        raise CheckpointError(f"could not write the checkpoint of step {state.step} into {folder}: "
                              f"{e.strerror or e}; free some space there (a checkpoint of this run takes at "
                              f"least {size / 2**20:.0f} MiB) and continue the run: {after}") from e
    prune(folder, keep, best_step=state.best_step)
    return final


def _write(tmp: Path, *, model: Any, optimizer: Any, scheduler: Any, scaler: Any, stream: Any,
           state: TrainState) -> None:
    from safetensors.torch import save_model

    import qarac_gui
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))      # handles the tied LM decoder
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "torch_rng": {"cpu": torch.get_rng_state(),
                              "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}},
               tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"trainer": asdict(state), "stream": stream.state_dict(),
                                                "rng": rng_state()}), encoding="utf-8")
    files = {}
    for path in sorted(tmp.iterdir()):
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        files[path.name] = _sha256(path)
    manifest = {"step": state.step, "files": files, "app_version": qarac_gui.__version__,
                "torch_version": torch.__version__}
    with open(tmp / MANIFEST, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)


def _size(folder: Path) -> int:
    try:
        return sum(p.stat().st_size for p in folder.iterdir())
    except OSError:
        return 0


def best_weights_path(checkpoint_dir: Path) -> Path:
    return checkpoint_dir / "best" / "model.safetensors"


def save_weights(model: Any, path: Path) -> None:
    """Model weights alone, replaced atomically (the best evaluation's weights, kept for export)."""
    from safetensors.torch import save_model
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_model(model, str(tmp))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def is_valid(path: Path, verify_hashes: bool = True) -> bool:
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        return all((path / n).is_file() and (not verify_hashes or _sha256(path / n) == h) for n, h in files.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def list_checkpoints(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX)), key=lambda p: p.name)


def latest_checkpoint(folder: Path) -> tuple[Path | None, list[str]]:
    """The newest intact checkpoint, and a note for each broken one skipped on the way."""
    notes = []
    for path in reversed(list_checkpoints(folder)):
        if is_valid(path):
            return path, notes
        notes.append(f"ignored {path.name}: incomplete or damaged (no manifest, or files that do not match it)")
    return None, notes


def prune(folder: Path, keep: int, best_step: int) -> None:
    checkpoints = list_checkpoints(folder)
    protected = {p for p in checkpoints[-keep:]}
    protected |= {p for p in checkpoints if p.name == f"{PREFIX}{best_step:08d}"}
    for p in checkpoints:
        if p not in protected:
            shutil.rmtree(p, ignore_errors=True)
    for p in folder.glob(f".tmp-{PREFIX}*"):
        shutil.rmtree(p, ignore_errors=True)


def load_checkpoint(path: Path, *, model: Any, optimizer: Any, scheduler: Any, scaler: Any,
                    stream: Any, device: Any) -> TrainState:
    from safetensors.torch import load_model
    load_model(model, str(path / "model.safetensors"), device=str(device))
    blob = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    if scaler is not None and blob["scaler"] is not None:
        scaler.load_state_dict(blob["scaler"])
    saved = json.loads((path / "state.json").read_text(encoding="utf-8"))
    stream.load_state_dict(saved["stream"])
    set_rng_state(saved["rng"], blob["torch_rng"])
    return TrainState(**saved["trainer"])
