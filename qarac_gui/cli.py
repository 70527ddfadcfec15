"""qarac-train: train a project headless, with a terminal progress bar or JSON lines of events."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
import time
from pathlib import Path

from qarac_gui.core.errors import UserError
from qarac_gui.core.events import Progress, RunEnded, RunStarted, StepDone, StepLogged, describe, event_to_json
from qarac_gui.core.model import code_trust
from qarac_gui.core.project.config import load_project

EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 130


def _format_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


REDRAW_S = 0.1      # the bar's fastest redraw: quicker than the eye wants, slow enough to cost nothing per step


class TerminalPrinter:
    """A one-line progress bar on a terminal, moved every step; plain lines (at most every 10 s) when output is
    redirected."""

    def __init__(self, stream=None, clock=time.monotonic) -> None:
        self.out = stream if stream is not None else sys.stderr
        self.tty = self.out.isatty()
        self.clock = clock
        self.total = 0
        self.start_step = 0
        self.numbers = ""                   # loss, lr and speed of the latest StepLogged, shown until the next
        self.next_draw = float("-inf")
        self.last_line = float("-inf")

    def _line(self, text: str) -> None:
        if self.tty:
            self.out.write("\r\033[K")
        self.out.write(text + "\n")
        self.out.flush()

    def __call__(self, event) -> None:
        match event:
            case StepDone():
                # Every step: only a terminal's bar moves; a log file gets its lines from StepLogged.
                if self.tty and (event.step == self.total or self.clock() >= self.next_draw):
                    self._draw(event.step, event.epoch, event.elapsed_s)
            case Progress(phase="download", message=message, done=done, total=total) if done < total:
                self._transient(f"  {message}")
            case Progress(message=message):
                self._line(f"  {message}")
            case RunStarted():
                self.total, self.start_step, self.numbers = event.total_steps, event.start_step, ""
                self._line(describe(event))
            case StepLogged():
                self._logged(event)
            case RunEnded(reason=reason) if reason in ("failed", "diverged"):
                # The message follows as the "error:" line; it is not printed twice.
                self._line(describe(dataclasses.replace(event, message="")))
            case _:
                if text := describe(event):
                    self._line(text)

    def _transient(self, text: str) -> None:
        """A line that the next one replaces on a terminal; in a log file, at most one every 10 s."""
        if self.tty:
            self.out.write("\r\033[K" + text)
            self.out.flush()
        elif self.clock() - self.last_line >= 10:
            self.last_line = self.clock()
            self._line(text)

    def _status(self, step: int, epoch: float, elapsed_s: float) -> str:
        done = step - self.start_step       # a resumed run's elapsed time counts from where it resumed
        eta = _format_eta(elapsed_s / done * (self.total - step)) if done > 0 else "?"
        return " | ".join([f"step {step}/{self.total}", f"epoch {epoch:.2f}", f"ETA {eta}"]
                          + ([self.numbers] if self.numbers else []))

    def _draw(self, step: int, epoch: float, elapsed_s: float) -> None:
        # A microsecond of slack: steps exactly REDRAW_S apart must not miss a redraw to float rounding.
        self.next_draw = self.clock() + REDRAW_S - 1e-6
        width = 20
        filled = int(width * step / max(1, self.total))
        self.out.write("\r\033[K[" + "#" * filled + "." * (width - filled) + "] "
                       + self._status(step, epoch, elapsed_s))
        self.out.flush()

    def _logged(self, e: StepLogged) -> None:
        losses = " ".join(f"{k} {v:.4f}" for k, v in e.task_losses.items())
        self.numbers = f"loss {losses} | lr {e.lr:.2e} | {e.samples_per_s:.1f} samples/s"
        if self.tty:
            self._draw(e.step, e.epoch, e.elapsed_s)
        elif self.clock() - self.last_line >= 10 or e.step == self.total:
            self.last_line = self.clock()
            self._line(self._status(e.step, e.epoch, e.elapsed_s))


def _silent(event) -> None:
    pass


def _leave_group() -> None:
    if "torch.distributed" in sys.modules:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def _jsonl(event) -> None:
    sys.stdout.write(event_to_json(event) + "\n")
    sys.stdout.flush()


def _find_batch_size(project, stop: threading.Event) -> int:
    from qarac_gui.core.probe import probe_batches
    for fit in probe_batches(project, TerminalPrinter(), stop):
        verdict = (f"batches of up to {fit.largest} rows fit" if fit.largest else "not even one row fits")
        print(f"{fit.task}: {verdict} (longest row {fit.tokens} tokens; the project sets {fit.configured})")
    return EXIT_OK


def _out_refusal(args: argparse.Namespace) -> str | None:
    """Why --out cannot take a new run, said before the data and the model take their half a minute to load."""
    out = args.out
    if out is None or args.resume or args.find_batch_size:     # a resume checks its folder itself; a probe writes none
        return None
    if out.exists() and not out.is_dir():
        return f"{out} is a file, not a folder; choose an empty or new folder for --out"
    try:
        taken = out.is_dir() and any(out.iterdir())
    except OSError as e:
        return f"{out} cannot be read ({e.strerror or e}); choose an empty or new folder for --out"
    if taken:
        return (f"{out} is not empty (it may hold another run); choose an empty or new folder for --out, or "
                "continue a stopped run there with --resume")
    return None


def _compare(a: Path, b: Path) -> int:
    from qarac_gui.core.results.compare import compare_runs, comparison_text
    try:
        print(comparison_text(compare_runs(a, b)))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def _push(args: argparse.Namespace) -> int:
    """Push a finished run's exported models to the Hub; Ctrl-C stops after the folder being sent."""
    from qarac_gui.core.results.history import human_size
    from qarac_gui.core.results.push import PushCancelled, push_run
    run = args.project
    if run is None:
        print("error: give the run folder to push: qarac-train RUN_FOLDER --push ORG/NAME", file=sys.stderr)
        return EXIT_ERROR
    if not run.is_dir():
        print(f"error: {run} is not a run folder: --push takes the folder of a finished run (the one holding "
              "export/), not a project file", file=sys.stderr)
        return EXIT_ERROR
    cancel = threading.Event()

    def on_sigint(signum, frame) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print("\nStopping after the folder being sent (Ctrl-C again to abort)...", file=sys.stderr)

    def show(p) -> None:
        print(f"  {p.message} [{p.files_done}/{p.files_total} files, {human_size(p.bytes_done)} of "
              f"{human_size(p.bytes_total)}]", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        urls = push_run(run, args.push, layout="one_repo" if args.one_repo else "per_task",
                        private=not args.public, progress=show, cancel=cancel)
    except PushCancelled as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (Exception, KeyboardInterrupt) as e:
        return _failure(e, "qarac-train --push", args.debug)
    finally:
        signal.signal(signal.SIGINT, previous)
    for url in urls:
        print(url)
    return EXIT_OK


def _onnx(run_dir: Path | None, debug: bool) -> int:
    """Write each task a finished run exported as ONNX beside it, checked against transformers with onnxruntime."""
    from qarac_gui.core.results.onnx_export import export_run_onnx
    if run_dir is None:
        print("error: give the run folder to convert: qarac-train RUN_FOLDER --onnx", file=sys.stderr)
        return EXIT_ERROR
    try:
        done, skipped = export_run_onnx(run_dir, TerminalPrinter())
    except (Exception, KeyboardInterrupt) as e:
        return _failure(e, "qarac-train --onnx", debug)
    for note in skipped:
        print(note, file=sys.stderr)
    for name, r in done.items():
        print(f"{r.folder / 'model.onnx'}  ({name}: inputs {', '.join(r.inputs)}; outputs {', '.join(r.outputs)}; "
              f"largest difference from transformers {r.max_difference:.1g})")
    return EXIT_OK


def _failure(e: BaseException, command: str, debug: bool) -> int:
    """How a command ends on an error: the user's problem in its words, an abort, or a bug (recorded; raised with
    --debug)."""
    if isinstance(e, UserError):
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    if isinstance(e, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if debug:
        raise e
    return _unexpected(e, command)


def _unexpected(e: Exception, command: str) -> int:
    """A bug, not bad input: recorded in the bug log and said in one line, never as a traceback."""
    from qarac_gui.core.bug_report import record
    log = record(e, command)
    details = f"details in {log}; " if log else ""
    print(f"error: unexpected {type(e).__name__}: {e} (a bug in qarac_gui: {details}run again with --debug to "
          "see them here)", file=sys.stderr)
    return EXIT_ERROR


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qarac-train", description="Fine-tune the tasks of a qarac_gui project "
                                "in parallel on a shared encoder, then export them.")
    p.add_argument("project", type=Path, nargs="?", help="the project file (TOML); with --push or --onnx, a run "
                   "folder")
    p.add_argument("--out", type=Path, help="run folder (default: a new folder under the app's runs directory)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--lr-scale", type=float, default=1.0, metavar="FACTOR",
                   help="with --resume: roll back to the latest checkpoint and continue with the learning rate "
                   "multiplied by FACTOR (e.g. 0.5 after a run stopped on NaN losses)")
    p.add_argument("--find-batch-size", action="store_true",
                   help="instead of training: find each task's largest batch (of its longest rows) that fits in "
                   "GPU memory, print it and exit")
    p.add_argument("--export-adapter", choices=["merged", "separate"],
                   help="backbones with LoRA adapters: export them merged into plain transformers weights, or the "
                   "adapter alone (peft's PeftModel.from_pretrained loads it onto the base model); the same as "
                   "--set export.adapter=...")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a project field, e.g. --set optim.lr=3e-5 --set tasks.sentiment.batch_size=8")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow the Python code of the model repositories of backbones whose project sets "
                   "trust_remote_code = true to run on this computer (a project file alone never can)")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("RUN_A", "RUN_B"),
                   help="instead of training: print how two run folders differ (their settings) and where each "
                   "ended (steps, final metrics), and exit")
    p.add_argument("--push", metavar="ORG/NAME",
                   help="instead of training: push the models a finished run exported (its folder in place of the "
                   "project file) to the Hugging Face Hub, one private repo per task, ORG/NAME-task; uses the login "
                   "of `hf auth login`")
    p.add_argument("--one-repo", action="store_true",
                   help="with --push: one repo ORG/NAME holding a folder per task")
    p.add_argument("--public", action="store_true", help="with --push: create the repos public, not private")
    p.add_argument("--onnx", action="store_true",
                   help="instead of training: write each task a finished run (its folder in place of the project "
                   "file) exported as ONNX "
                   "(export/TASK/onnx/model.onnx, dynamic batch and length, beside its tokenizer), check it against "
                   "transformers with onnxruntime, and exit; needs pip install 'qarac_gui[onnx]'")
    p.add_argument("--jsonl", action="store_true", help="print every event as one JSON line on stdout")
    p.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    return p


def main(argv: list[str] | None = None) -> int:
    code = _main(argv)
    if int(os.environ.get("WORLD_SIZE") or 1) > 1:
        # One process of several under torchrun, its work done and its process group closed: leave without the
        # interpreter's teardown, in which the collectives' own threads can abort the process after the run
        # ended well (torchrun would then report the run as failed).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _main(argv: list[str] | None) -> int:
    if getattr(sys, "frozen", False):       # a bundled binary: child processes run their task, not this CLI again
        import multiprocessing
        multiprocessing.freeze_support()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.compare:
        return _compare(*args.compare)
    if args.onnx:
        return _onnx(args.project, args.debug)
    if args.push is not None:
        return _push(args)
    if args.one_repo or args.public:
        print("error: --one-repo and --public go with --push ORG/NAME", file=sys.stderr)
        return EXIT_ERROR
    if args.project is None:
        parser.print_usage(sys.stderr)
        print("error: give the project file to train (or --compare RUN_A RUN_B, or a run folder with --push or "
              "--onnx)", file=sys.stderr)
        return EXIT_ERROR
    if args.resume and args.out is None:
        print("error: --resume needs --out DIR, the folder of the run to continue", file=sys.stderr)
        return EXIT_ERROR
    from qarac_gui.core.training import distributed
    try:
        world = distributed.from_env()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    # Under torchrun rank 0 alone checks and writes the run folder (the others would find it taken)
    if world.writer and (refusal := _out_refusal(args)):
        print(f"error: {refusal}", file=sys.stderr)
        return EXIT_ERROR
    stop = threading.Event()

    def on_sigint(signum, frame) -> None:
        if stop.is_set():                 # a second Ctrl-C: give up at once
            raise KeyboardInterrupt
        stop.set()
        print("\nStopping after this step and writing a checkpoint (Ctrl-C again to abort)...", file=sys.stderr)

    def on_sigterm(signum, frame) -> None:
        # systemd, docker stop and Slurm ask with SIGTERM and kill a little later: stop as a first Ctrl-C does,
        # and let a second SIGTERM wait too, because the checkpoint being written is what the user needs.
        if not stop.is_set():
            stop.set()
            print("\nTerminated: stopping after this step and writing a checkpoint...", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_sigint)
    previous_term = signal.signal(signal.SIGTERM, on_sigterm)
    previous_policy = code_trust.policy()
    code_trust.set_policy(code_trust.CommandLineGrant(args.trust_remote_code))
    try:
        if args.export_adapter:         # the same as --set export.adapter=...
            args.overrides.append(f"export.adapter={args.export_adapter}")
        project = load_project(args.project, args.overrides)
        from qarac_gui.core.model.hub import guard_hub_requests
        guard_hub_requests()            # bounds every Hub request of this process, transformers' and datasets' too
        if args.find_batch_size:
            if world.on:
                raise UserError("--find-batch-size measures in one process: run it without torchrun; batch_size "
                                "under torchrun is the whole batch, which the processes share")
            return _find_batch_size(project, stop)
        world = distributed.start(project.train.device)
        # One process of the run speaks: the others' events would repeat its own
        printer = (_jsonl if args.jsonl else TerminalPrinter()) if world.writer else _silent
        if not args.resume:
            problems: list[str] = []
            if world.local_rank == 0:   # once per machine; the other processes then find the data in the cache
                from qarac_gui.core.preflight import preflight
                from qarac_gui.core.training.setup import fetch_hub_data
                fetch_hub_data(project, printer, stop)        # with progress, before the checks read the data
                problems, warnings, notes = preflight(project)   # the GUI's pre-Start checks, before any training
                for note in notes if world.writer else ():
                    print(note, file=sys.stderr)
                for warning in warnings if world.writer else ():
                    print(f"warning: {warning}", file=sys.stderr)
            # Process 0's verdict for all: every process ends the same way, none waits for one that left
            problems = distributed.from_rank_0(world, problems)
            if problems:
                if world.writer:
                    print("error: " + "; ".join(problems), file=sys.stderr)
                return EXIT_ERROR
        from qarac_gui.core.run import run
        ended = run(project, printer, stop, run_dir=args.out,
                    resume=args.resume, lr_scale=args.lr_scale)
    except (Exception, KeyboardInterrupt) as e:
        if not args.debug and world.on and distributed.peer_left(e):
            print("error: another process of this run stopped (its own message says why); this one stops too",
                  file=sys.stderr)
            return EXIT_ERROR
        return _failure(e, "qarac-train", args.debug)
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
        code_trust.set_policy(previous_policy)
        _leave_group()
    if ended.reason == "diverged":
        print(f"error: {ended.message}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_INTERRUPTED if ended.reason == "stopped" else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
