"""The devices a run can use, for the settings' device list (imports torch: call it off the GUI thread)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceChoice:
    value: str          # what train.device takes
    label: str          # what the user reads
    available: bool


def list_devices() -> list[DeviceChoice]:
    import torch
    choices = [DeviceChoice("auto", "Automatic (the GPU if there is one)", True),
               DeviceChoice("cpu", f"CPU ({os.cpu_count() or 1} cores)", True)]
    if torch.cuda.is_available():
        gpus = []
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpus.append(f"{props.name}, {props.total_memory / 2**30:.0f} GiB")
        choices.append(DeviceChoice("cuda", f"CUDA GPU ({'; '.join(gpus)})", True))
    else:
        choices.append(DeviceChoice("cuda", "CUDA GPU (none found)", False))
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    choices.append(DeviceChoice("mps", "Apple GPU (MPS)" if has_mps else "Apple GPU (MPS, not available)", has_mps))
    return choices


@dataclass(frozen=True)
class MemoryUse:
    used: int           # bytes this process holds on the device (on a CPU: its resident memory)
    peak: int           # the most it held since the process (or the allocator's statistics) began
    total: int          # the device's memory, or the machine's; 0 when unknown


def memory_use(device: str) -> MemoryUse | None:
    """What the run's device holds now, from torch's own allocator statistics (the process's resident memory on a
    CPU); None when it cannot be told. Reads only an already loaded torch: the window calls it while a run trains."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    kind = device.split(":")[0]
    if kind == "cuda" and torch.cuda.is_initialized():
        index = torch.device(device).index
        index = torch.cuda.current_device() if index is None else index
        return MemoryUse(torch.cuda.memory_reserved(index), torch.cuda.max_memory_reserved(index),
                         torch.cuda.get_device_properties(index).total_memory)
    if kind == "mps":
        used = torch.mps.driver_allocated_memory()
        return MemoryUse(used, used, torch.mps.recommended_max_memory())
    if kind == "cpu":
        return _process_memory()
    return None


def _process_memory() -> MemoryUse | None:
    try:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak *= 1 if sys.platform == "darwin" else 1024         # bytes on macOS, KiB on Linux
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ImportError, ValueError, OSError):
        return None                                             # Windows: no resource module
    try:
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        used = peak                                             # macOS has no /proc: the peak is what is known
    return MemoryUse(used, max(peak, used), total)
