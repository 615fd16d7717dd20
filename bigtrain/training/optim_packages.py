"""The third-party optimizer packages behind the `optimizers` extra, resolved in one place.

Nothing here imports a package at module import: `bigbench list`, the matrix and the preset
parser only ask whether a package is present (`missing_reason`), and the class is imported when a
cell is built (`load_class`). A package that is not installed makes its optimizer's cells
`unsupported` with the install line as the reason, never a traceback.

The pins live in pyproject.toml's `optimizers` extra; `PACKAGES` names the same distributions
(tests check that the two agree).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bigtrain.common.errors import BadInput

EXTRA = "optimizers"
INSTALL_LINE = f"pip install -e '.[{EXTRA}]'"


@dataclass(frozen=True, kw_only=True)
class OptimizerPackage:
    """A distribution that brings optimizers: its pip name and the module it installs."""

    distribution: str
    module: str
    why: str = ""


#: Distribution name -> the package (what the `optimizers` extra installs).
PACKAGES: dict[str, OptimizerPackage] = {
    p.distribution: p for p in (
        OptimizerPackage(distribution="schedulefree", module="schedulefree",
                         why="Schedule-Free AdamW by its authors (Defazio et al.)"),
        OptimizerPackage(distribution="lion-pytorch", module="lion_pytorch",
                         why="Lion (Chen et al. 2023), the widely used port"),
        OptimizerPackage(distribution="heavyball", module="heavyball",
                         why="SOAP and Shampoo in one maintained library with one API"),
        OptimizerPackage(distribution="torchao", module="torchao",
                         why="8-bit AdamW from PyTorch's own quantisation library (any device "
                             "torch.compile reaches, unlike bitsandbytes' CUDA kernels)"),
    )
}


class MissingPackage(BadInput):
    """An optimizer's package is not installed; the message carries the install line."""


def _package(distribution: str) -> OptimizerPackage:
    try:
        return PACKAGES[distribution]
    except KeyError:  # a bug in the optimizer table, not user input
        raise ValueError(f"unknown optimizer package {distribution!r}; "
                         f"known: {', '.join(PACKAGES)}") from None


def missing_reason(distribution: str) -> str | None:
    """Why `distribution` cannot be used here (not installed), with the install line; None when it
    can. Looks the module up without importing it."""
    package = _package(distribution)
    try:
        found = importlib.util.find_spec(package.module) is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return None
    return f"the {distribution} package is not installed: {INSTALL_LINE}"


def package_version(distribution: str) -> str | None:
    """The installed version of `distribution`, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


#: Loggers that warn at import about things that are not a problem here: torchao's wheel carries
#: CUDA-only kernel libraries that a CPU torch cannot load (one warning each), and torch's pytree
#: warns about torchao registering an Enum the old way. Raised to ERROR while the package imports.
_NOISY_IMPORT_LOGGERS = ("torch.utils._pytree",)


@contextlib.contextmanager
def _import_warnings_quieted(module: str) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in (module, *_NOISY_IMPORT_LOGGERS)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def load_class(distribution: str, attribute: str) -> Any:
    """`attribute` of the package's module (dotted below it, e.g. `optim.AdamW8bit`), imported
    now; MissingPackage (exit 2, with the install line) when the package is absent or broken."""
    if reason := missing_reason(distribution):
        raise MissingPackage(reason)
    package = _package(distribution)
    try:
        with _import_warnings_quieted(package.module):
            target: Any = importlib.import_module(package.module)
    except Exception as exc:  # noqa: BLE001 - a broken install reads as a missing one, with its error
        raise MissingPackage(f"the {distribution} package failed to import "
                             f"({type(exc).__name__}: {exc}); reinstall it: {INSTALL_LINE}") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            try:
                target = importlib.import_module(f"{target.__name__}.{part}")
            except (ImportError, AttributeError):
                version = package_version(distribution)
                raise MissingPackage(f"{distribution} {version} has no {attribute}; install the "
                                     f"pinned release: {INSTALL_LINE}") from None
    return target
