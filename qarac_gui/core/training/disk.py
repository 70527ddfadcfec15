"""Telling a failed write apart from a bug: a full or read-only disk reaches us as OSError from Python, but as
their own errors from torch's zip writer and safetensors."""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

# Below this much free space, a writer's failure without an errno is taken for a full disk.
NEARLY_FULL = 4 * 2**20


def free_bytes(path: Path) -> int | None:
    for folder in (path, *path.parents):
        try:
            return shutil.disk_usage(folder).free
        except OSError:
            continue
    return None


def write_failure(error: BaseException, where: Path) -> OSError | None:
    """The OSError behind a failed write into `where`, or None when `error` is not one (then it is a bug)."""
    if isinstance(error, OSError):
        return error
    text = str(error)
    torch_writer = isinstance(error, RuntimeError) and ("inline_container" in text or "PytorchStreamWriter" in text)
    safetensors_io = type(error).__name__ == "SafetensorError" and ("I/O error" in text or "os error" in text)
    if not (torch_writer or safetensors_io):
        return None
    code = re.search(r"os error (\d+)", text)
    if code:
        number = int(code.group(1))
        return OSError(number, os.strerror(number), str(where))
    free = free_bytes(where)
    if free is not None and free < NEARLY_FULL:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(where))
    return OSError(errno.EIO, f"the write failed ({text.splitlines()[0][:200] if text else type(error).__name__})",
                   str(where))


def describe(error: OSError) -> str:
    """The reason in a user's words: the OS's own text, plus what it means where that is not obvious."""
    reason = error.strerror or str(error)
    if error.errno == errno.EROFS:
        return f"{reason} (the disk is mounted read-only)"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"{reason} (you may not write there)"
    return reason
