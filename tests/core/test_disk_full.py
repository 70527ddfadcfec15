"""A full disk while a checkpoint or the export is written: a clear message, nothing earlier lost, and the run
continues from its last checkpoint once there is space again."""

import errno
import threading

import pytest
import torch
from tiny import project_dict

from qarac_gui.core.errors import UserError
from qarac_gui.core.events import RunEnded, RunStarted
from qarac_gui.core.project.config import parse_project
from qarac_gui.core.results import export as export_module
from qarac_gui.core.run import run
from qarac_gui.core.training import checkpoint as ckpt_module
from qarac_gui.core.training.checkpoint import is_valid

pytestmark = pytest.mark.usefixtures("torch_threads")

SECTIONS = dict(train={"max_steps": 8}, checkpoint={"every": 2, "keep": 3}, optim={"lr": 1e-3})


def _full_disk(path):
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


def _run(tmp_path, model, name, resume=False):
    project = parse_project(project_dict(model, tmp_path / "data", ["classification", "regression"], **SECTIONS),
                            tmp_path)
    events = []
    try:
        run(project, events.append, threading.Event(), run_dir=tmp_path / name, resume=resume)
    except UserError as e:
        return events, e
    return events, None


def _weights(folder):
    from safetensors.torch import load_file
    return {f"{f.relative_to(folder)}:{k}": v for f in sorted(folder.rglob("*.safetensors"))
            for k, v in load_file(f).items()}


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_keeps_the_earlier_ones_and_the_run_continues(tmp_path, tiny_bert,
                                                                                       monkeypatch):
    real_save = torch.save

    def save(obj, path, *args, **kwargs):
        if "step-00000004" in str(path):
            with open(path, "wb") as f:         # half a file, then no more room
                f.write(b"\0" * 1000)
            _full_disk(path)
        return real_save(obj, path, *args, **kwargs)
    monkeypatch.setattr(ckpt_module.torch, "save", save)
    events, error = _run(tmp_path, tiny_bert, "run")
    assert error is not None
    message = str(error)
    assert "could not write the checkpoint of step 4" in message and "No space left on device" in message
    assert "free some space" in message and "continue from the checkpoint of step 2" in message
    assert events[-1] == RunEnded(4, "failed", message, str(tmp_path / "run"))
    folder = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000002"]    # no half checkpoint left behind
    assert is_valid(folder / "step-00000002")

    monkeypatch.setattr(ckpt_module.torch, "save", real_save)              # space again
    events, error = _run(tmp_path, tiny_bert, "run", resume=True)
    assert error is None and events[-1].reason == "completed"
    assert next(e for e in events if isinstance(e, RunStarted)).start_step == 2
    _run(tmp_path, tiny_bert, "straight")
    a, b = _weights(tmp_path / "straight" / "export"), _weights(tmp_path / "run" / "export")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_full_disk_during_the_export_leaves_no_half_export_and_continuing_exports_again(tmp_path, tiny_bert,
                                                                                          monkeypatch):
    real_full = export_module.export_full

    def export_full(folder, *args, **kwargs):
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"\0" * 100)
        _full_disk(folder / "model.safetensors")
    monkeypatch.setattr(export_module, "export_full", export_full)
    events, error = _run(tmp_path, tiny_bert, "run")
    assert error is not None and "could not write the exported models" in str(error)
    assert "continue the run" in str(error)
    run_dir = tmp_path / "run"
    assert not (run_dir / "export").exists() and not (run_dir / ".export-partial").exists()
    assert is_valid(run_dir / "checkpoints" / "step-00000008")    # the end of training was saved before exporting

    monkeypatch.setattr(export_module, "export_full", real_full)
    events, error = _run(tmp_path, tiny_bert, "run", resume=True)
    assert error is None and events[-1].reason == "completed" and events[-1].step == 8
    assert next(e for e in events if isinstance(e, RunStarted)).start_step == 8
    assert (run_dir / "export" / "full" / "heads.safetensors").is_file()
    assert (run_dir / "export" / "classification" / "config.json").is_file()
