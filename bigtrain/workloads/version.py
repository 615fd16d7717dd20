"""A version stamp per workload definition, so a result says which definition it measured.

The stamp is a short hash of what decides the model and batch a cell builds, given its axes:

- the size config: its type and fields, except `description` (prose) and `default_batch_size`
  (the batch size a cell used is an axis of its own record);
- the code: the source of the family's builder and of every function and class it reaches
  through global names, as long as they are defined in the builder's own package or in
  bigtrain (so the model classes, the data helpers, `Workload.forward_loss` and
  `WorkloadFamily.build` count; torch does not — the environment fingerprint records its version).

It is computed from the code's syntax tree (comments, docstrings and layout left out) and field
values only, so it is the same in every process and on every machine with the same code, and a
reworded comment does not make a workload look redefined; any change to what the code does
(a name, a constant, a statement) changes it.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import json
import textwrap
import types
from typing import Any

from bigtrain.workloads.base import SizeConfig, WorkloadFamily

#: Hex digits kept: 12 (48 bits) is plenty to tell a handful of definitions apart.
VERSION_LENGTH = 12
#: Size-config fields that do not change what a cell builds.
UNSTAMPED_FIELDS = ("description", "default_batch_size")


#: Stamps already computed in this process, keyed by the builder function itself (held, so its id
#: cannot be reused) and the frozen size config: a reused worker builds the same definition for
#: cell after cell, and walking and parsing the code costs ~15-20 ms each time.
_STAMPS: dict[tuple[Any, SizeConfig], str] = {}


def definition_version(family: WorkloadFamily, config: SizeConfig) -> str:
    """The version stamp of one family's builder with one size config."""
    try:
        return _STAMPS[(family.build_fn, config)]
    except KeyError:
        pass
    except TypeError:  # a config with an unhashable field: compute it every time
        return _compute_version(family, config)
    stamp = _STAMPS[(family.build_fn, config)] = _compute_version(family, config)
    return stamp


def _compute_version(family: WorkloadFamily, config: SizeConfig) -> str:
    digest = hashlib.sha256()
    digest.update(_config_text(config).encode())
    # WorkloadFamily.build counts too: it seeds torch and gates batch norm before the builder.
    for name, source in _code_sources(family.build_fn, type(family).build):
        digest.update(b"\0" + name.encode() + b"\0" + source.encode())
    return digest.hexdigest()[:VERSION_LENGTH]


def _config_text(config: SizeConfig) -> str:
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
              if f.name not in UNSTAMPED_FIELDS}
    kind = f"{type(config).__module__}.{type(config).__qualname__}"
    return json.dumps({"type": kind, "fields": fields}, sort_keys=True, default=repr)


def _code_sources(*roots: Any) -> list[tuple[str, str]]:
    """(qualified name, source) of the roots and everything they reach, sorted by name."""
    packages = {"bigtrain", *(_package_of(root) for root in roots)}
    seen: dict[str, str] = {}
    pending = list(roots)
    while pending:
        obj = pending.pop()
        name = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
        if name in seen:
            continue
        seen[name] = _source(obj)
        pending.extend(o for o in _referenced(obj) if _package_of(o) in packages)
    return sorted(seen.items())


def _package_of(obj: Any) -> str:
    return (getattr(obj, "__module__", None) or "").partition(".")[0]


def _source(obj: Any) -> str:
    try:
        return _syntax_of(inspect.getsource(obj))
    except (OSError, TypeError):
        # Defined without a source file (e.g. `python -c`): fall back to the compiled code, which
        # is still the same in every process of one Python version.
        codes = _code_objects(obj)
        return repr([(c.co_code, c.co_names, _plain_consts(c)) for c in codes])


def _syntax_of(source: str) -> str:
    """The source's syntax tree as text, without docstrings, comments or layout."""
    tree = ast.parse(textwrap.dedent(source))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


def _plain_consts(code: types.CodeType) -> tuple[Any, ...]:
    return tuple(c for c in code.co_consts if not isinstance(c, types.CodeType))


def _functions_of(obj: Any) -> list[types.FunctionType]:
    """The plain functions behind a function, or behind a class's methods and properties."""
    if isinstance(obj, types.FunctionType):
        return [obj]
    if not isinstance(obj, type):
        return []
    functions = []
    for member in vars(obj).values():
        for candidate in (member, getattr(member, "__func__", None), getattr(member, "fget", None)):
            if isinstance(candidate, types.FunctionType):
                functions.append(candidate)
    return functions


def _code_objects(obj: Any) -> list[types.CodeType]:
    codes: list[types.CodeType] = []
    pending = [f.__code__ for f in _functions_of(obj)]
    while pending:
        code = pending.pop()
        codes.append(code)
        pending.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return codes


def _referenced(obj: Any) -> list[Any]:
    """Functions and classes named as globals in `obj`'s code (nested code included); a class
    also brings its bases."""
    found: list[Any] = []
    for function in _functions_of(obj):
        namespace = function.__globals__
        pending = [function.__code__]
        while pending:
            code = pending.pop()
            for name in code.co_names:
                value = namespace.get(name)
                if isinstance(value, (types.FunctionType, type)):
                    found.append(value)
            pending.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    if isinstance(obj, type):
        found.extend(obj.__bases__)
    return found
