"""Memory sizes for `bigbench fit`: reading `--memory-budget`, a model's own parameter bytes, and
the range a budget must lie in (bad input otherwise, before anything runs).

A CPU has no out-of-memory error to catch before the kernel's OOM killer, so on the CPU a probe
fits when the peak memory the tool records (`peak_rss_bytes`, the worker process's peak resident
set) is within the stated budget; on CUDA a probe fits when it does not run out of the device's
memory (capped with --memory-fraction), and a stated budget is checked against the allocator's
reserved peak (`peak_mem_reserved_bytes`) as well.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from bigtrain.common.errors import BadInput

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*([A-Za-z]*)\s*$")
SIZE_EXAMPLES = "512MiB, 2GB, 1.5GiB, 4000000000 (bytes)"

#: The recorded peak a budget is checked against, per device type.
CHECKED_PEAK = {"cpu": "peak_rss_bytes", "cuda": "peak_mem_reserved_bytes"}


def parse_memory_size(text: str, where: str = "--memory-budget") -> int:
    """Bytes from `512MiB`, `2GB`, `1.5GiB`, `4000000000`: decimal (kB, MB, GB, TB) and binary
    (KiB, MiB, GiB, TiB) units, case-insensitive. BadInput names the text and the valid forms."""
    match = _SIZE.match(str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise BadInput(f"{where}: {text!r} is not a memory size; valid: a number with an "
                       f"optional unit B, kB, MB, GB, TB, KiB, MiB, GiB, TiB, e.g. {SIZE_EXAMPLES}")
    value = float(match.group(1)) * _UNITS[unit]
    if not math.isfinite(value) or value < 1 or value > 2**62:
        raise BadInput(f"{where}: {text!r} is out of range; valid: 1 byte to 4 EiB")
    return int(value)


def human_size(value: float | None) -> str:
    """Bytes in binary units, three significant digits (`1.00 GiB`, `512 MiB`)."""
    if value is None:
        return "-"
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {unit}"
    return f"{value:.0f} B"


def parameter_bytes(model: str) -> int | None:
    """The bytes of `family:size`'s parameters, counted on the meta device (nothing is allocated,
    so GPT-2 medium costs a tenth of a second); None where the family cannot build on meta."""
    import torch

    from bigtrain.workloads import resolve_model

    ref = resolve_model(model)
    try:
        with torch.device("meta"):
            workload = ref.family.build(ref.size.name, batch_size=1, device="meta")
    except Exception:  # a plugin that builds on a real device only: the probes will say
        return None
    return sum(p.numel() * p.element_size() for p in workload.model.parameters())


def host_memory_bytes() -> int:
    """This machine's RAM."""
    import psutil

    return int(psutil.virtual_memory().total)


def check_memory_budget(budget_bytes: int, models: Iterable[str], *, on_cpu: bool,
                        where: str = "--memory-budget") -> None:
    """BadInput unless the budget can hold each model's own parameters and, for CPU cells, fits
    in this machine's RAM: the message names the bad value and the valid range."""
    ram = host_memory_bytes() if on_cpu else None
    floors = {model: parameter_bytes(model) for model in dict.fromkeys(models)}
    largest = max(((b, m) for m, b in floors.items() if b is not None), default=None)
    upper = f"{human_size(ram)} (this machine's RAM)" if ram else "the device's memory"
    if largest is not None and budget_bytes < largest[0]:
        raise BadInput(
            f"{where} {human_size(budget_bytes)} ({budget_bytes:,} bytes) is below the parameters "
            f"of {largest[1]} alone ({human_size(largest[0])}, {largest[0]:,} bytes): nothing "
            f"could fit; valid range: {human_size(largest[0])} to {upper}")
    if ram is not None and budget_bytes > ram:
        low = human_size(largest[0]) if largest is not None else "1 B"
        raise BadInput(
            f"{where} {human_size(budget_bytes)} is above this machine's RAM ({human_size(ram)}): "
            f"a probe could be killed by the kernel before it is over budget; valid range: "
            f"{low} to {human_size(ram)}")
