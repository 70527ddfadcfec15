"""Static bounds of a project's numbers: what the libraries and the memory take, used by config.validate. (What
the model takes, max_length against its position embeddings, is in positions.py.)"""

from __future__ import annotations

# Optimiser steps of one run: 10^8 is months of training even at tens of steps a second; more is a typo, not a
# plan. Everything that counts steps (warm-up, log/eval/checkpoint intervals) is bounded by it too.
MAX_STEPS = 10**8
# numpy's seeding (the held-out split, the trainer) takes 0..2**32-1; torch and random take more, numpy decides.
MAX_SEED = 2**32 - 1
# A fixed bound, not one of this computer's cores: a project file moves between a laptop and a 256-core server,
# and must not become invalid on the way. 1024 is above the hardware threads of any current machine, and far
# below the 10^6 that makes torch start so many OpenMP threads that the process dies.
MAX_THREADS = 1024
# Rows per batch and micro-batches per step: every step holds a list of that many draws, and more rows than this
# in one batch fit in no device's memory with any encoder; a larger effective batch is batch_size x grad_accum.
MAX_BATCH = 2**16
MAX_ACCUM = 2**16
# Tokens per row: above every encoder's context (the model's own limit is checked when it is loaded).
MAX_LENGTH = 2**20
# A head's hidden layer is allocated at once (hidden x hidden weights): the widest encoders are 2**14 wide.
MAX_HIDDEN = 2**16
# Each checkpoint is a whole copy of the model and the optimiser's state.
MAX_KEEP = 1000

def bound_problems(limits: list[tuple[str, int | float, int, str]]) -> list[str]:
    """One problem per (key, value, largest sensible value, why) whose value is above its bound."""
    return [f"{key}: {value if isinstance(value, int) else format(value, '.10g')} is more than {limit} ({why}); "
            f"set it to {limit} or less" for key, value, limit, why in limits if value > limit]
