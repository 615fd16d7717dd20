"""Non-PyTorch framework backends behind the `framework` axis (see `bigtrain.frameworks.base`).

`BACKENDS` maps each non-torch axis value to the module holding its backend (a module-level
`BACKEND` implementing `FrameworkBackend`). Nothing is imported until a backend is asked for, and a
backend module that is absent from this build, or fails to import, reads as a `missing_reason`,
never as an ImportError at import time: `bigbench list`, the matrix and the report stay usable on a
machine with neither JAX nor TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

#: The default framework: cells measured by bigtrain's own torch machinery, not a backend.
TORCH = "torch"
#: The `framework` axis values after torch, and where each one's backend lives.
BACKENDS: dict[str, str] = {
    "jax": "bigtrain.frameworks.jax_backend",
    "tensorflow": "bigtrain.frameworks.tf_backend",
}
FRAMEWORKS: tuple[str, ...] = (TORCH, *BACKENDS)

_loaded: dict[str, Any] = {}
_import_errors: dict[str, str] = {}


def load_backend(name: str) -> Any | None:
    """The backend object of framework `name` (its module's `BACKEND`), or None when its module
    cannot be imported (`missing_reason` then says why). Raises KeyError for a name that is not
    in `BACKENDS` (torch included: it has no backend object)."""
    module_path = BACKENDS[name]
    if name in _loaded:
        return _loaded[name]
    if name in _import_errors:
        return None
    try:
        module = importlib.import_module(module_path)
        backend = module.BACKEND
    except Exception as exc:  # noqa: BLE001 - an absent or broken backend is data, not a crash
        _import_errors[name] = f"{type(exc).__name__}: {exc}".strip()
        return None
    _loaded[name] = backend
    return backend


def missing_reason(name: str) -> str | None:
    """Why framework `name` cannot run cells here (its package is not installed, its backend
    module is absent or broken), or None; torch is never missing (bigtrain depends on it)."""
    if name == TORCH:
        return None
    backend = load_backend(name)
    if backend is None:
        return (f"the {name} backend ({BACKENDS[name]}) cannot be loaded: "
                f"{_import_errors.get(name, 'unknown error')}")
    reason = backend.missing_reason()
    if reason:
        return f"{reason}; install it with: {backend.install_line}"
    return None


def framework_cell_reason(cell: Any) -> str | None:
    """Why the non-torch `cell` cannot run here (its framework missing, or its backend has no
    counterpart for the cell), decided before anything runs; None when it can run."""
    name = cell.framework
    if name == TORCH:
        return None
    if reason := missing_reason(name):
        return reason
    return load_backend(name).unsupported_reason(cell)


#: The distributions each framework's cells need, read from package metadata without importing
#: them (`bigbench list`, the environment fingerprint). Either TensorFlow build serves.
PACKAGES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "jax": ("jax", "jaxlib", "flax", "optax"),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "keras"),
}


def installed_versions(name: str) -> dict[str, str]:
    """The installed versions of framework `name`'s distributions (absent ones left out), from
    package metadata: nothing is imported."""
    from importlib import metadata

    out = {}
    for distribution in PACKAGES[name]:
        try:
            out[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return out


def probe_version_info(name: str, timeout_s: float = 120.0) -> dict[str, str] | str:
    """Framework `name`'s own `version_info()` (versions, backend, devices), asked in a fresh
    interpreter so that this process never imports the framework; the problem as text when the
    probe fails."""
    import json
    import subprocess
    import sys

    code = ("import json, sys\nfrom bigtrain.frameworks import load_backend\n"
            f"backend = load_backend({name!r})\n"
            "print(json.dumps({k: str(v) for k, v in backend.version_info().items()}))")
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return f"no answer within {timeout_s:g} s"
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"the probe failed: {tail[:300]}"
    try:
        info = json.loads(lines[-1])
    except json.JSONDecodeError:
        return f"the probe printed no JSON: {lines[-1][:300]}"
    return info if isinstance(info, dict) else f"the probe printed {type(info).__name__}"
