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


@pytest.mark.parametrize("compile_", [False, True])
def test_steady_steps_never_wait_for_the_gpu(tmp_path, tiny_bert, compile_):
    """CUDA's own sync detector, set to raise, on every step but the first few and the last (which logs,
    evaluates and checkpoints on purpose): any host read of a device value in a step fails the run."""
    from qarac_gui.core.training import loop
    from qarac_gui.core.training.compiling import compile_problem
    from qarac_gui.core.training.setup import build_run
    if compile_ and compile_problem(torch.device("cuda")):
        pytest.skip(compile_problem(torch.device("cuda")))
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification", "similarity", "masked_lm"],
                       train={"max_steps": 14, "log_every": 100, "device": "cuda", "precision": "bf16",
                              "compile": compile_},
                       checkpoint={"every": 0, "minutes": 0}, eval={"every": 0, "batch_size": 16})
    stop = threading.Event()
    t, state, _ = build_run(parse_project(raw, tmp_path), tmp_path / "run", lambda e: None, stop, resume=False)
    real = loop._backward
    watched = []

    def backward(t_, state_, step, *args):
        # The verdict of step s is read during step s + 1 through a CUDA event, which the detector does not flag.
        on = 4 <= step < t_.plan.total_steps
        torch.cuda.set_sync_debug_mode("error" if on else "default")
        watched.append(step) if on else None
        return real(t_, state_, step, *args)
    loop._backward = backward
    try:
        assert loop.fit(t, state, lambda e: None, stop, min_log_interval=0) == "completed"
    finally:
        loop._backward = real
        torch.cuda.set_sync_debug_mode("default")
    assert watched == list(range(4, 14))
