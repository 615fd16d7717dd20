"""What this torch can really do on this CPU: a training-step probe per model x precision, cached.

A torch build can lack a kernel for a dtype on a given CPU: on an AMD EPYC without AVX-512 BF16,
oneDNN refuses a bf16 LSTM ("could not create a primitive descriptor for the LSTM forward
propagation primitive") while every other family trains. Such a cell is not a failure of the
benchmark but a fact about the machine, so it is found out before anything runs and recorded
`unsupported` with the reason, as an optimizer implementation the device lacks is.

The probe builds the model at batch 2 and runs one forward and backward pass under the
precision's autocast. A size may name a smaller size of its family with the same layer types
(`SizeConfig.probe_as`: GPT-2 small is probed as transformer:tiny), since a missing kernel belongs
to an op and a dtype, not to a width (GPT-2 small's own bf16 probe took minutes on a CPU without
bf16 units); the reason then says which size was probed. It runs in a spawned process (a plugin
model that crashes while building must not take the sweep's driver with it). A combination is unsupported only when the precision fails and
the same model in fp32 trains: a model that cannot train at all is a bug to be reported by its
cell's `error` record, never hidden as a capability. Answers are cached per machine (torch
version and build, CPU model and flags) under `$BIGTRAIN_CACHE_DIR` (default
`~/.cache/bigtrain`), so a machine pays for each combination once.

Only CPU cells with an autocast precision are probed: fp32 is the reference, and on CUDA the
precisions are decided from the device's compute capability before this runs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
import platform
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The batch every probe uses: the smallest at which batch norm trains (one sample per channel
#: has no variance).
PROBE_BATCH_SIZE = 2
#: One combination's probe (the first also imports torch) must answer within this; one that does
#: not is left undecided and its cells run as usual.
PROBE_TIMEOUT_S = 120.0
#: Bumped when what a cached answer means changes, so old caches are ignored.
CACHE_FORMAT = 1
REFERENCE_PRECISION = "fp32"


@dataclass(frozen=True)
class ProbeKey:
    """One combination: a resolved model name, whether its batch-norm slots are on, a precision."""

    model: str
    batch_norm: bool
    precision: str

    @property
    def text(self) -> str:
        return f"{self.model}|bn={'on' if self.batch_norm else 'off'}|{self.precision}"


def cache_dir() -> Path:
    """Where per-machine capability answers live."""
    configured = os.environ.get("BIGTRAIN_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bigtrain"


def machine_key() -> str:
    """A fingerprint of what decides a kernel's availability: torch's version and build
    configuration, the CPU model and its instruction-set flags."""
    import torch

    parts = [str(CACHE_FORMAT), torch.__version__, platform.machine(), _cpu_identity(),
             torch.__config__.show()]
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def _cpu_identity() -> str:
    """The CPU's model name and flags (Linux), or what the platform says elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor()
    model = flags = ""
    for line in text.splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name == "model name" and not model:
            model = value.strip()
        elif name in ("flags", "Features") and not flags:
            flags = " ".join(sorted(value.split()))
    return f"{model}\n{flags}"


def _cache_path() -> Path:
    return cache_dir() / f"capabilities-{machine_key()}.json"


def _read_cache(path: Path) -> dict[str, str | None]:
    """Cached answers (key text -> None when it trains, else the reason); a missing or unreadable
    cache is empty, never an error (it is only a cache)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    answers = data.get("answers") if isinstance(data, dict) else None
    if not isinstance(answers, dict):
        return {}
    return {k: v for k, v in answers.items() if isinstance(k, str) and (v is None or isinstance(v, str))}


def _write_cache(path: Path, answers: Mapping[str, str | None]) -> None:
    """Replace the cache atomically; a cache that cannot be written is skipped silently (the
    next run probes again)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp",
                                         encoding="utf-8") as handle:
            json.dump({"format": CACHE_FORMAT, "answers": dict(sorted(answers.items()))}, handle,
                      indent=1)
        os.replace(handle.name, path)
    except OSError:
        pass


def probe_one(key: ProbeKey) -> str | None:
    """Run one training step of `key` on the CPU; None when it trains, else the error's first
    line (type and message)."""
    import torch

    from bigtrain.training.precision import resolve_precision
    from bigtrain.workloads import resolve_model

    ref = resolve_model(key.model)
    recipe = resolve_precision(key.precision)
    try:
        workload = ref.family.build(ref.size.name, batch_size=PROBE_BATCH_SIZE,
                                    batch_norm=key.batch_norm, device=torch.device("cpu"))
        with recipe.autocast("cpu"):
            loss = workload.forward_loss()
        loss.float().backward()
    except Exception as exc:  # noqa: BLE001 - any failure is the answer, reported as text
        # The first sentence: oneDNN's messages go on with advice on its own debug switches.
        first_line = (str(exc).strip().splitlines() or [""])[0]
        sentence = first_line.split(". ", 1)[0].rstrip(".")
        return f"{type(exc).__name__}: {sentence}"[:300]
    return None


def _probe_child(keys: list[tuple[str, bool, str]], connection: Any) -> None:
    """Spawned-process body: probe each key, sending (key, answer) as each one ends so a crash
    loses only the key it happened on."""
    import torch

    torch.set_num_threads(1)
    for model, batch_norm, precision in keys:
        answer = probe_one(ProbeKey(model, batch_norm, precision))
        connection.send(((model, batch_norm, precision), answer))
    connection.close()


def _probe_in_child(keys: list[ProbeKey], per_key_timeout_s: float) -> dict[ProbeKey, str | None]:
    """Probe `keys` in spawned processes, in order. A key whose probe crashes its process, or
    takes more than `per_key_timeout_s`, is left out of the answer (undecided: its cells run and
    report for themselves); the keys after it are probed in a fresh process."""
    answers: dict[ProbeKey, str | None] = {}
    pending = list(keys)
    while pending:
        answered = _one_child(pending, per_key_timeout_s)
        answers.update(answered)
        done = len(answered)
        pending = pending[done + 1:]  # the key after the answered ones was the one at fault
    return answers


def _one_child(keys: list[ProbeKey], per_key_timeout_s: float) -> dict[ProbeKey, str | None]:
    """One spawned prober over `keys`; the answers it sent, in order, until it ended, crashed or
    went quiet for longer than `per_key_timeout_s`."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_probe_child, daemon=True,
                              args=([(k.model, k.batch_norm, k.precision) for k in keys], child))
    process.start()
    child.close()
    answers: dict[ProbeKey, str | None] = {}
    try:
        # The first answer also waits for the child's torch import.
        while len(answers) < len(keys) and parent.poll(per_key_timeout_s):
            try:
                (model, batch_norm, precision), answer = parent.recv()
            except (EOFError, OSError, ValueError, TypeError):
                break  # the child ended (or sent garbage): keep what arrived
            key = ProbeKey(model, batch_norm, precision)
            if key != keys[len(answers)]:
                break
            answers[key] = answer
    finally:
        parent.close()
        if process.is_alive():
            process.kill()
        process.join(timeout=5)
    return answers


def unsupported_reasons(keys: Iterable[ProbeKey], *,
                        timeout_s: float = PROBE_TIMEOUT_S) -> dict[ProbeKey, str]:
    """For each combination this CPU's torch cannot train in, why; the ones that train (or that
    could not be decided) are absent.

    Answers come from the per-machine cache; what is missing there is probed in a spawned
    process (a fresh one after a probe that crashed), together with each model's fp32
    reference, then cached.
    """
    asked = sorted(set(keys), key=lambda k: k.text)
    if not asked:
        return {}
    probed_as = {k: ProbeKey(probe_model(k.model), k.batch_norm, k.precision) for k in asked}
    wanted = sorted(set(probed_as.values()), key=lambda k: k.text)
    references = {ProbeKey(k.model, k.batch_norm, REFERENCE_PRECISION) for k in wanted}
    everything = sorted(set(wanted) | references, key=lambda k: k.text)
    path = _cache_path()
    cached = _read_cache(path)
    missing = [k for k in everything if k.text not in cached]
    if missing:
        probed = _probe_in_child(missing, timeout_s)
        if probed:
            cached.update({k.text: answer for k, answer in probed.items()})
            _write_cache(path, cached)
    import torch

    machine = f"torch {torch.__version__} on this CPU ({_cpu_name()})"
    reasons: dict[ProbeKey, str] = {}
    for key in asked:
        probe = probed_as[key]
        if probe.text not in cached or cached[probe.text] is None:
            continue
        reference = ProbeKey(probe.model, probe.batch_norm, REFERENCE_PRECISION)
        if cached.get(reference.text, "undecided") is not None:
            continue  # fp32 fails too (or was not decided): the model's own problem, not the CPU's
        where = ("the capability probe" if probe.model == key.model else
                 f"the capability probe on {probe.model}, the same layers at a smaller size")
        reasons[key] = (f"{machine} cannot train {key.model} in {key.precision}: "
                        f"{cached[probe.text]} (found by {where}; fp32 trains)")
    return reasons


def probe_model(model: str) -> str:
    """The model the probe builds for `model`: its family's declared stand-in size, or itself
    (also for a name that does not resolve: its cell reports that for itself)."""
    from bigtrain.common.errors import BadInput
    from bigtrain.workloads import resolve_model

    try:
        ref = resolve_model(model)
    except BadInput:
        return model
    stand_in = ref.family.probe_size(ref.size.name)
    return model if stand_in == ref.size.name else f"{ref.family.name}:{stand_in}"


def _cpu_name() -> str:
    return _cpu_identity().split("\n", 1)[0] or platform.machine() or "unknown CPU"
