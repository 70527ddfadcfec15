"""The order a checkpoint reaches the disk in: data files synced, the manifest written and synced last, the folder
synced, renamed into place, and the parent folder synced; only then are old checkpoints pruned."""

import hashlib
import json
import os
import sys

import pytest
import torch

from qarac_gui.core.training import checkpoint as ck

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads fd paths from /proc")


class _Stream:
    def state_dict(self):
        return {"pos": 3}


def _save(folder, step, keep=2):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    return ck.save_checkpoint(folder, model=model, optimizer=optimizer, scheduler=scheduler, scaler=None,
                              stream=_Stream(), state=ck.TrainState(step=step), keep=keep)


def test_files_then_manifest_then_folder_then_rename_then_parent_then_prune(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    _save(folder, 1)
    _save(folder, 2)
    log = []
    real_fsync, real_replace, real_rmtree = os.fsync, os.replace, ck.shutil.rmtree

    def fsync(fd):
        log.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        log.append(("rename", str(src), str(dst)))
        real_replace(src, dst)

    def rmtree(path, *args, **kwargs):
        log.append(("delete", str(path)))
        real_rmtree(path, *args, **kwargs)
    monkeypatch.setattr(ck.os, "fsync", fsync)
    monkeypatch.setattr(ck.os, "replace", replace)
    monkeypatch.setattr(ck.shutil, "rmtree", rmtree)
    final = _save(folder, 3)

    tmp = str(folder / ".tmp-step-00000003")
    steps = [entry if entry[0] != "fsync" else ("fsync", entry[1].removeprefix(tmp + "/")) for entry in log
             if entry != ("delete", tmp)]       # clearing a stale temporary folder first is allowed
    assert steps == [
        ("fsync", "model.safetensors"),
        ("fsync", "optimizer.pt"),
        ("fsync", "state.json"),
        ("fsync", "manifest.json"),
        ("fsync", tmp),
        ("rename", tmp, str(final)),
        ("fsync", str(folder)),
        ("delete", str(folder / "step-00000001")),     # keep=2: the oldest goes only after the new one is in place
    ]
    manifest = json.loads((final / "manifest.json").read_text())
    assert manifest["step"] == 3 and set(manifest["files"]) == {"model.safetensors", "optimizer.pt", "state.json"}
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((final / name).read_bytes()).hexdigest() == digest


def test_a_checkpoint_whose_file_changed_after_writing_is_ignored_with_a_note(tmp_path):
    folder = tmp_path / "checkpoints"
    _save(folder, 1)
    second = _save(folder, 2)
    with open(second / "optimizer.pt", "r+b") as f:      # one flipped byte, as a failing disk would leave it
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    path, notes = ck.latest_checkpoint(folder)
    assert path == folder / "step-00000001"
    assert notes == ["ignored step-00000002: incomplete or damaged (no manifest, or files that do not match it)"]
