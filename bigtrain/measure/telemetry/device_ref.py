"""Which NVML device a torch `cuda[:N]` device is, through CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

import os
import re

from bigtrain.measure.telemetry.errors import DeviceNotVisible


def nvml_device_ref(device: str) -> int | str:
    """The NVML index (or UUID) of a `cuda` / `cuda:N` device, mapped through CUDA_VISIBLE_DEVICES.

    CUDA numbers only the visible devices; NVML numbers every device. With CUDA_VISIBLE_DEVICES=2,3,
    `cuda:1` is NVML index 3. Entries given as UUIDs (GPU-..., MIG-...) are returned as UUIDs.
    CUDA_DEVICE_ORDER=FASTEST_FIRST (CUDA's default) can order devices differently from NVML's PCI
    order on mixed machines; set CUDA_DEVICE_ORDER=PCI_BUS_ID there.
    """
    match = re.fullmatch(r"cuda(?::(\d+))?", device.strip())
    if match is None:
        raise ValueError(f"not a CUDA device: {device!r} (expected 'cuda' or 'cuda:N')")
    ordinal = int(match.group(1) or 0)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return ordinal
    entries = [entry.strip() for entry in visible.split(",") if entry.strip()]
    if ordinal >= len(entries):
        raise DeviceNotVisible(
            f"{device} is not visible: CUDA_VISIBLE_DEVICES={visible!r} lists {len(entries)} device(s)"
        )
    entry = entries[ordinal]
    if entry.isdigit():
        return int(entry)
    return entry
