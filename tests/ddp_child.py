"""One process of a run under torchrun, for the tests of training with several processes.

Usage: torchrun --standalone --nproc_per_node=N ddp_child.py PROJECT.toml RUN_DIR OUT_DIR [--resume]
       [--pause-file-at STEP] [--stop-file-at STEP]
Each rank writes OUT_DIR/rank-R.json (how its run ended, how many gradient all-reduces each step ran, how many
gradient buckets DDP made, the validation metrics it was sent, how many validation rows of each task its model
evaluated) and OUT_DIR/rank-R.safetensors (its final weights). With --stop-file-at, rank 0 creates
RUN_DIR/stop-request when step STEP is logged, as a window following the run would; with --pause-file-at it
creates RUN_DIR/pause-request, and removes it once the run says it paused.
"""

import json
import os
import sys
import threading
from pathlib import Path

from qarac_gui.core.events import EvalDone, Progress, StepDone, StepLogged
from qarac_gui.core.project.config import load_project
from qarac_gui.core.run import run
from qarac_gui.core.training import distributed, forgetting, loop, setup


def main() -> int:
    project_file, run_dir, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    stop_at = int(sys.argv[sys.argv.index("--stop-file-at") + 1]) if "--stop-file-at" in sys.argv else 0
    pause_at = int(sys.argv[sys.argv.index("--pause-file-at") + 1]) if "--pause-file-at" in sys.argv else 0
    rank = int(os.environ.get("RANK", "0"))
    distributed.POLL_S = 0.0            # the request files are looked at every step: no race with the clock
    seen = {"model": None, "reduces": 0, "buckets": set(), "per_step": {}, "logged": {}, "phases": [], "evals": {},
            "evaluated": {}, "task_weights": {}}
    real_evaluate = loop.evaluate_task

    def counting_evaluate(model, data, *args, **kwargs):
        def counted(name, batch):           # the rows this rank's model evaluates
            rows = {v.shape[0] for k, v in batch.items() if k != "masked_positions"}
            seen["evaluated"][name] = seen["evaluated"].get(name, 0) + rows.pop()
            return model(name, batch)
        return real_evaluate(counted, data, *args, **kwargs)
    loop.evaluate_task = forgetting.evaluate_task = counting_evaluate
    real_wrap = distributed.wrap

    def counting_wrap(model, device, *more):
        import torch.distributed as dist
        ddp = real_wrap(model, device, *more)
        seen["model"] = model

        def hook(state, bucket):        # the default all-reduce, counted
            seen["reduces"] += 1
            seen["buckets"].add(bucket.index())
            buffer = bucket.buffer()
            buffer.div_(dist.get_world_size())
            return dist.all_reduce(buffer, async_op=True).get_future().then(lambda f: f.value()[0])
        ddp.register_comm_hook(None, hook)
        return ddp
    setup.wrap = counting_wrap
    before = {"count": 0}

    def emit(event) -> None:
        if isinstance(event, StepDone):
            seen["per_step"][event.step] = seen["reduces"] - before["count"]
            before["count"] = seen["reduces"]
        if isinstance(event, EvalDone):
            seen["evals"][event.step] = event.metrics
        if isinstance(event, StepLogged):
            seen["logged"][event.step] = event.task_losses
            if event.task_weights:
                seen["task_weights"][event.step] = event.task_weights
            if stop_at and event.step == stop_at:
                (run_dir / distributed.STOP_REQUEST).touch()
            if pause_at and event.step == pause_at:
                (run_dir / distributed.PAUSE_REQUEST).touch()
        if isinstance(event, Progress) and event.phase in ("paused", "resumed"):
            seen["phases"].append(event.phase)
            (run_dir / distributed.PAUSE_REQUEST).unlink(missing_ok=True)
    project = load_project(project_file)
    ended = run(project, emit, threading.Event(), run_dir=run_dir, resume="--resume" in sys.argv,
                min_log_interval=0.0)
    if rank != 0:   # the other ranks emit nothing: count their all-reduces from their own hook
        seen["per_step"] = {"total": seen["reduces"]}
    if seen["model"] is not None:
        from safetensors.torch import save_model
        save_model(seen["model"], str(out / f"rank-{rank}.safetensors"))
    (out / f"rank-{rank}.json").write_text(json.dumps({
        "reason": ended.reason, "step": ended.step, "message": ended.message, "per_step": seen["per_step"],
        "buckets": len(seen["buckets"]), "logged": seen["logged"], "phases": seen["phases"], "evals": seen["evals"],
        "evaluated": seen["evaluated"], "task_weights": seen["task_weights"]}), encoding="utf-8")
    import torch.distributed as dist
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)          # as qarac-train leaves under torchrun: no interpreter teardown after the work is done
