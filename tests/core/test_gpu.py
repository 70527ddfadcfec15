"""Mixed precision runs only where CUDA is; on a CPU-only machine these are skipped."""

import threading

import pytest
from tiny import project_dict

from qarac_gui.core.events import EvalDone, RunStarted, StepLogged
from qarac_gui.core.project.config import parse_project
from qarac_gui.core.run import run

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("precision", ["bf16", "fp16", "auto"])
def test_mixed_precision_training_on_cuda(tmp_path, tiny_bert, precision):
    import math
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification", "similarity", "masked_lm"],
                       train={"max_steps": 8, "precision": precision, "device": "cuda"})
    events = []
    ended = run(parse_project(raw, tmp_path), events.append, threading.Event(), run_dir=tmp_path / "run",
                min_log_interval=0)
    started = next(e for e in events if isinstance(e, RunStarted))
    assert ended.reason == "completed" and started.device.startswith("cuda")
    assert started.precision == ("bf16" if precision == "auto" and torch.cuda.is_bf16_supported() else
                                 precision if precision != "auto" else "fp16")
    assert all(math.isfinite(v) for e in events if isinstance(e, StepLogged) for v in e.task_losses.values())
    assert any(isinstance(e, EvalDone) for e in events)
