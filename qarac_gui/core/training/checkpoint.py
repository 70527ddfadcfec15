"""Checkpoints: everything a stopped run needs to continue, written so that a crash never leaves a half one."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from qarac_gui.core.errors import UserError
from qarac_gui.core.training.disk import describe, write_failure

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
    data: dict = field(default_factory=dict)   # task -> {"rows", "sha256"} of the tokenised training rows
    # eval.task_patience: task -> {"metric", "best_value", "best_step", "evals_without_improvement", "stopped_at"}
    # (stopped_at 0: still training); see task_stopping.py
    task_progress: dict = field(default_factory=dict)
    forgetting_baseline: dict = field(default_factory=dict)   # keep task -> its metrics at step 0
    forgetting_alerted: list = field(default_factory=list)    # keep tasks beyond eval.forgetting_alert now


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
        # A run saved on a machine with more GPUs resumes on one with fewer: the GPUs it has take their states
        for index, cuda_state in enumerate(torch_states["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


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
                    stream: Any, state: TrainState, keep: int, world_size: int = 1) -> Path:
    """Write into a temporary folder, fsync, write the manifest last, then rename into place. `world_size`, the
    number of processes that trained, is recorded in the manifest; a run resumes on any number.

    A write that fails (a full disk) removes its temporary folder and leaves every earlier checkpoint as it was.
    """
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{PREFIX}{state.step:08d}"
    tmp = folder / f".tmp-{PREFIX}{state.step:08d}"
    try:
        _write(tmp, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, stream=stream, state=state,
               world_size=world_size)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(folder)
    except Exception as e:
        failure = write_failure(e, folder)
        if failure is None:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        previous, _ = latest_checkpoint(folder)
        size = _size(previous) if previous else _size(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        after = (f"the run can continue from the checkpoint of step {int(previous.name[len(PREFIX):])}"
                 if previous else "the run has no earlier checkpoint")
        raise CheckpointError(f"could not write the checkpoint of step {state.step} into {folder}: "
                              f"{describe(failure)}; free some space there (a checkpoint of this run takes at "
                              f"least {size / 2**20:.0f} MiB) and continue the run: {after}") from e
    prune(folder, keep)
    return final


def _write(tmp: Path, *, model: Any, optimizer: Any, scheduler: Any, scaler: Any, stream: Any,
           state: TrainState, world_size: int = 1) -> None:
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
                "torch_version": torch.__version__, "world_size": world_size}
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
    replace_file(path, lambda tmp: save_model(model, str(tmp)), "the weights of the best evaluation")


def replace_file(path: Path, write: Callable[[Path], None], what: str) -> None:
    """`path` written by write(a temporary file beside it), synced and renamed over it, so a crash leaves the old
    file or the new, never half of one; a full disk is said in words, as `what` could not be kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as e:
        failure = write_failure(e, path.parent)
        tmp.unlink(missing_ok=True)
        if failure is None:
            raise
        raise CheckpointError(f"could not keep {what} in {path}: {describe(failure)}; free some space there and "
                              "continue the run from its last checkpoint") from e


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


def prune(folder: Path, keep: int) -> None:
    """Keep the newest `keep` checkpoints. Resuming reads only the newest; the best evaluation's weights, which the
    export takes with eval.keep_best, are kept apart in best/, so the best step's whole checkpoint (its optimiser
    state is twice the model) is not kept for them."""
    checkpoints = list_checkpoints(folder)
    protected = set(checkpoints[-max(1, keep):])
    for p in checkpoints:
        if p not in protected:
            shutil.rmtree(p, ignore_errors=True)
    for p in folder.glob(f".tmp-{PREFIX}*"):
        shutil.rmtree(p, ignore_errors=True)


def load_checkpoint(path: Path, *, model: Any, optimizer: Any, scheduler: Any, scaler: Any,
                    stream: Any, device: Any) -> TrainState:
    """Load everything or raise CheckpointError naming the file that does not fit; never a half-loaded state
    that trains on (the caller stops the run)."""
    from safetensors.torch import load_model
    part = "model.safetensors"
    try:
        load_model(model, str(path / part), device=str(device))
        part = "optimizer.pt"
        blob = torch.load(path / part, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(blob["optimizer"])
        scheduler.load_state_dict(blob["scheduler"])
        if scaler is not None and blob["scaler"] is not None:
            scaler.load_state_dict(blob["scaler"])
        part = "state.json"
        saved = json.loads((path / part).read_text(encoding="utf-8"))
        stream.load_state_dict(saved["stream"])
        set_rng_state(saved["rng"], blob["torch_rng"])
        return TrainState(**saved["trainer"])
    except Exception as e:
        reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        if isinstance(e, KeyError):
            reason = f"it lacks {e}"
        elif isinstance(e, TypeError) and "TrainState" in str(e):
            reason = "its counters are not the ones this app writes"
        raise CheckpointError(f"{path.name}/{part} does not fit this run ({type(e).__name__}: {reason}); it was "
                              "written for another project or replaced by another file. Continue with the run's "
                              f"own project ({path.parent.parent / 'project.toml'}), delete {path} to continue "
                              "from an earlier checkpoint, or start a new run") from None


def rows_fingerprint(ds: Any) -> dict:
    """{"rows", "sha256"} of a tokenised dataset's contents, in order: a resumed run must train on the very rows it
    started with, or its stream positions and epochs mean something else."""
    import pyarrow as pa
    digest = hashlib.sha256()

    def feed(array: Any) -> None:
        if isinstance(array, pa.ChunkedArray):
            for chunk in array.chunks:
                feed(chunk)
        elif pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
            offsets = array.offsets.to_numpy()
            digest.update((offsets - offsets[0]).astype(np.int64).tobytes())
            feed(array.flatten())
        elif pa.types.is_struct(array.type):
            for i in range(array.type.num_fields):
                feed(array.field(i))
        elif pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_boolean(array.type):
            digest.update(array.to_numpy(zero_copy_only=False).tobytes())
        else:                               # strings and anything else: by value, slower but exact
            digest.update(json.dumps(array.to_pylist(), default=str).encode("utf-8"))
    table = ds.with_format("arrow")
    for batch in table.iter(batch_size=10_000):
        for name in sorted(batch.column_names):
            digest.update(name.encode("utf-8"))
            feed(batch.column(name))
    return {"rows": len(ds), "sha256": digest.hexdigest()}


def saved_rows(path: Path) -> dict:
    """The training-row fingerprints a checkpoint was written with ({} when it predates them or is unreadable:
    load_checkpoint then says what is wrong with it)."""
    try:
        data = json.loads((path / "state.json").read_text(encoding="utf-8"))["trainer"]["data"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and {"rows", "sha256"} <= v.keys()}


def changed_rows(saved: dict, now: dict) -> list[str]:
    """What differs between the training rows a checkpoint was written with and today's, one line per task."""
    lines = []
    for name, then in saved.items():
        current = now.get(name)
        if current is None or current == then:
            continue
        count = (f"{then['rows']} rows then, {current['rows']} now" if then["rows"] != current["rows"]
                 else f"the same {current['rows']} rows in number, with other contents")
        lines.append(f"task {name}: its training rows changed since the run started ({count})")
    return lines
