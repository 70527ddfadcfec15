"""train.compile: the backbones compiled by torch.compile, and the count of graphs it made said in the log.

Each backbone is compiled in place (nn.Module.compile), so its weights keep their names: checkpoints, the
non-finite guard, evaluation and export see the same module as in an uncompiled run. Its sizes are left open, so
one graph serves every batch shape, and training and evaluation take a graph each. Batches are padded to multiples
of PAD_MULTIPLE tokens all the same: the matrix products then keep shapes that tensor cores run at full speed.

A compiled run resumes from its checkpoints like any other, but not to the last bit: the compiler's kernels add
some gradients in an order that changes from run to run (two compiled runs from the same seed differ by about
1e-8 in their weights on a CPU), where an uncompiled run repeats itself exactly.
"""

from __future__ import annotations

import shutil
from typing import Any

import torch

from qarac_gui.core.errors import UserError
from qarac_gui.core.events import Emit, Progress

PAD_MULTIPLE = 16


def compile_problem(device: torch.device) -> str:
    """Why torch.compile cannot run here ("" when it can): its code generators need a compiler of their own."""
    fix = "; set train.compile = false to train without it"
    if device.type == "cuda":
        from torch.utils._triton import has_triton
        return "" if has_triton() else "train.compile on a CUDA GPU needs Triton (pip install triton)" + fix
    if device.type == "cpu":
        from torch._inductor.cpp_builder import get_cpp_compiler
        try:
            found = shutil.which(get_cpp_compiler())
        except Exception:   # noqa: BLE001 - torch raises its own types when no compiler is configured
            found = None
        return "" if found else ("train.compile on the CPU needs a C++ compiler (g++ or clang++ on the PATH, the "
                                 "Visual Studio build tools on Windows)" + fix)
    return f"train.compile is not supported on {device.type.upper()} devices" + fix


def compile_backbones(model: Any, tasks: dict[str, Any], device: torch.device) -> None:
    problem = compile_problem(device)
    if problem:
        raise UserError(problem)
    for data in tasks.values():
        data.pad_multiple = PAD_MULTIPLE
    for encoder in model.backbones.values():
        # Sizes left open from the first step: one graph serves every batch shape (the padding to multiples of
        # 16 then keeps the matrix products aligned for tensor cores), and training and evaluation a graph each.
        encoder.compile(dynamic=True)


def graphs_compiled() -> int:
    from torch._dynamo.utils import counters
    return int(counters["stats"]["unique_graphs"])


class GraphReport:
    """Says in the log when the compiler made new graphs (a new shape, or training after evaluation)."""

    def __init__(self, on: bool) -> None:
        self.on = on
        self.start = self.seen = graphs_compiled() if on else 0

    def __call__(self, emit: Emit) -> None:
        if not self.on:
            return
        now = graphs_compiled()
        if now != self.seen:
            emit(Progress("compile", f"torch.compile: {now - self.seen} new graph(s) compiled, "
                                     f"{now - self.start} in this run"))
            self.seen = now
