"""The optional model libraries (torchvision, transformers): whether they are installed, and their
import, in one place.

`installed()` only looks for the package (no import: the plugin hooks run in every process that
reads a registry, and importing transformers costs seconds). The imports happen when a model is
built.

PyPI's torchvision wheels carry C++ operators (nms, roi_align, ...) linked against a CUDA build of
torch. Beside a CPU-only torch they cannot load, and torchvision 0.28 then fails at import, in an
unguarded fake-tensor registration for `torchvision::nms`; transformers imports torchvision
whenever it is installed, so it fails too. Classification models and Hugging Face models need none
of those operators: when (and only when) that exact failure happens, `import_torchvision` declares
the two operators' schemas, without kernels, and imports again. Calling nms then fails with
"no kernel", which nothing here does.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

#: The optional extra that brings these libraries, as a user types it.
INSTALL_COMMAND = "pip install 'bigtrain[models]'"

#: The schemas torchvision registers fake kernels for at import (torchvision/csrc/ops/nms.cpp).
_TORCHVISION_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
#: Held for the life of the process: a dropped Library takes its definitions with it.
_schema_library = None
#: Set when the operators were declared without kernels (recorded in a cell's notes).
torchvision_ops_missing = False


def installed(module: str) -> bool:
    """True when `module` can be found (not imported); False also when a test blocks it by
    putting None in sys.modules, as a missing package looks."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def unavailable_reason(*modules: str) -> str | None:
    """Why a family needing `modules` cannot be used here (None: all installed)."""
    missing = [m for m in modules if not installed(m)]
    if not missing:
        return None
    return f"{' and '.join(missing)} not installed; install with: {INSTALL_COMMAND}"


def import_torchvision() -> ModuleType:
    """`import torchvision`, tolerating a wheel whose C++ operators cannot load (see above)."""
    global _schema_library, torchvision_ops_missing
    try:
        import torchvision
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
        import torch

        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]  # the half-imported package, so the import runs again
        _schema_library = torch.library.Library("torchvision", "FRAGMENT")
        for schema in _TORCHVISION_SCHEMAS.values():
            _schema_library.define(schema)
        torchvision_ops_missing = True
        import torchvision
    return torchvision


def import_transformers() -> ModuleType:
    """`import transformers`, with torchvision (which it imports when installed) made importable
    first."""
    if installed("torchvision"):
        import_torchvision()
    import transformers

    return transformers


def library_versions(*modules: str) -> dict[str, str]:
    """`{module: version}` of imported modules, for a record's notes."""
    return {m: str(getattr(sys.modules[m], "__version__", "?")) for m in modules if m in sys.modules}
