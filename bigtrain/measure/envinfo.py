"""The environment fingerprint recorded in every manifest and printed by `bigbench env`.

It sits above `bigtrain.measure` (the hardware probes: CPU name, NVML inventory) and uses them;
nothing in `bigtrain.measure` imports this module.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bigtrain import __version__
from bigtrain.measure.host import cpu_model

__all__ = ["FINGERPRINT_KEYS", "collect_environment", "cpu_model", "fingerprint_differences",
           "git_state", "hardware_fingerprint"]

#: Fields whose change makes two runs' timings incomparable: resume and compare refuse (unless
#: forced) when any differs. The CPU thread count is one: it sets every CPU cell's speed.
FINGERPRINT_KEYS = ("gpus", "driver_version", "torch_version", "cuda_version", "cpu_model",
                    "torch_num_threads")


def git_state(path: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout bigtrain runs from; (None, None) outside git."""
    where = path or Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(dirty)


def git_commit_time(path: Path | None = None) -> str | None:
    """The committer time of HEAD (ISO 8601), which `bigbench history` orders runs by; None
    outside git."""
    where = path or Path(__file__).resolve().parents[2]
    try:
        return subprocess.run(
            ["git", "-C", str(where), "show", "-s", "--format=%cI", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def collect_environment() -> dict[str, Any]:
    """Everything that identifies the machine and software a run was made with."""
    import psutil
    import torch

    # Imported here: `compare` loads this module for the fingerprint functions alone.
    from bigtrain.measure.telemetry import nvml_inventory

    commit, dirty = git_state()
    inventory = nvml_inventory()
    gpus = list(inventory.get("gpus") or [])
    if not gpus and torch.cuda.is_available():
        # NVML missing but CUDA present: names from torch, the rest unknown.
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append({"index": index, "name": props.name, "uuid": str(getattr(props, "uuid", "")),
                         "memory_total_bytes": props.total_memory, "power_limit_w": None})
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "bigtrain_version": __version__,
        "host": socket.gethostname(),
        "os": platform.platform(),
        # what pytest-benchmark's machine_info holds (the pytest-benchmark export reads them)
        "os_system": platform.system(),
        "os_release": platform.release(),
        "machine": platform.machine(),
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cudnn_version": cudnn,
        "driver_version": inventory.get("driver_version"),
        "gpus": gpus,
        "gpu_count": len(gpus),
        "gpu_names": sorted({g["name"] for g in gpus}),
        "nvml_reason": inventory.get("nvml_reason"),
        "cpu_model": cpu_model(),
        "cpu_cores_logical": psutil.cpu_count(logical=True),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "ram_bytes": psutil.virtual_memory().total,
        "torch_num_threads": torch.get_num_threads(),
        # the framework axis's other frameworks (issue 28), from package metadata: not imported
        "framework_versions": _framework_versions(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "git_commit": commit,
        "git_dirty": dirty,
        "git_commit_time": git_commit_time() if commit else None,
    }


def _framework_versions() -> dict[str, dict[str, str]]:
    from bigtrain.frameworks import BACKENDS, installed_versions

    return {name: installed_versions(name) for name in BACKENDS}


def hardware_fingerprint(environment: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a run's environment that make its timings comparable to another's
    (GPU names with their count, driver, torch, CUDA, CPU model, CPU threads)."""
    fingerprint = {key: environment.get(key) for key in FINGERPRINT_KEYS}
    fingerprint["gpus"] = sorted(str(g.get("name", "?")) for g in environment.get("gpus") or [])
    return fingerprint


def fingerprint_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable `field: old -> new` for each fingerprint field that differs."""
    before, after = hardware_fingerprint(old), hardware_fingerprint(new)
    return [f"{key}: {before[key]!r} -> {after[key]!r}" for key in FINGERPRINT_KEYS
            if before[key] != after[key]]
