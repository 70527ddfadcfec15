"""The devices a run can use, for the settings' device list (imports torch: call it off the GUI thread)."""

from __future__ import annotations

import os
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
