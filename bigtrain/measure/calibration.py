"""This machine's measured ceilings: matmul TFLOP/s per precision and device-to-device copy bandwidth.

`calibrate(device)` measures them (random data, warm-up, median of repeats; CUDA events on a GPU,
perf_counter on the CPU) and `save_calibration` stores them as JSON, keyed by a hash of the device
name, driver and torch (and, on the CPU, the thread count, which sets the CPU's matmul rate), under
$BIGTRAIN_CALIBRATION_DIR or ~/.cache/bigtrain/calibration. `load_calibration(device)` finds the
stored calibration for the same machine fingerprint, or None.

Copy bandwidth counts bytes read plus bytes written (a copy of N bytes moves 2N), the same way the
optimizer's bandwidth floor counts its traffic.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bigtrain import __version__
from bigtrain.measure.host import cpu_model
from bigtrain.common.errors import BadInput

log = logging.getLogger(__name__)

CPU_PRECISIONS = ("fp32", "bf16")
CUDA_PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
DEFAULT_SIZES = {"cpu": (1024,), "cuda": (4096, 8192)}
DEFAULT_COPY_BYTES = {"cpu": 128 << 20, "cuda": 1 << 30}
#: Each timed repeat runs the op enough times to last about this long (smooths launch overhead).
TARGET_REPEAT_S = {"cpu": 0.05, "cuda": 0.02}
CALIBRATION_FORMAT = 1


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """Measured ceilings of one device, with the fingerprint of the machine they belong to."""

    device: str
    device_name: str
    fingerprint: Mapping[str, Any]
    fingerprint_key: str
    created_at: str
    matmul_tflops: Mapping[str, float]  # precision -> best median over the sizes tried
    matmul_tflops_by_size: Mapping[str, Mapping[str, float]]  # precision -> {size: TFLOP/s}
    copy_bandwidth_bytes_per_s: float | None
    copy_bytes: int
    repeats: int
    bigtrain_version: str = __version__
    format: int = CALIBRATION_FORMAT
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = dataclasses.asdict(self)
        out["notes"] = list(self.notes)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Calibration:
        """Parse a stored calibration; raises ValueError naming what is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError("a calibration must be a JSON object")
        if data.get("format") != CALIBRATION_FORMAT:
            raise ValueError(f"calibration format {data.get('format')!r}, expected {CALIBRATION_FORMAT}")
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            kwargs = {k: v for k, v in data.items() if k in names}
            kwargs["notes"] = tuple(kwargs.get("notes") or ())
            return cls(**kwargs)
        except TypeError as exc:
            raise ValueError(f"malformed calibration: {exc}") from None


# --------------------------------------------------------------------------------------------------
# Devices and fingerprints


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda:0' or 'cpu'; 'cuda' -> 'cuda:0'; BadInput for anything not on this machine."""
    import torch

    device = device.strip().lower()
    cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    choices = ["auto", "cpu"] + [f"cuda:{i}" for i in range(cuda_count)]
    if device == "auto":
        return "cuda:0" if cuda_count else "cpu"
    if device == "cpu":
        return "cpu"
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if match and int(match.group(1) or 0) < cuda_count:
        return f"cuda:{int(match.group(1) or 0)}"
    raise BadInput(f"--device: unknown or absent device {device!r}; valid choices: {', '.join(choices)}")


def device_fingerprint(device: str) -> dict[str, Any]:
    """What a calibration is valid for: device name, driver, torch (and CPU threads)."""
    import torch

    if device == "cpu":
        return {
            "device_type": "cpu",
            "device_name": cpu_model() or "unknown CPU",
            "torch_version": torch.__version__,
            "torch_num_threads": torch.get_num_threads(),
        }
    from bigtrain.measure.telemetry import nvml_inventory

    index = torch.device(device).index or 0
    return {
        "device_type": "cuda",
        "device_name": torch.cuda.get_device_name(index),
        "driver_version": nvml_inventory().get("driver_version"),
        "cuda_runtime": torch.version.cuda,
        "torch_version": torch.__version__,
    }


def fingerprint_key(fingerprint: Mapping[str, Any]) -> str:
    """A short stable hash of a fingerprint, used as the file name."""
    blob = json.dumps(fingerprint, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def calibration_dir() -> Path:
    """$BIGTRAIN_CALIBRATION_DIR, else $XDG_CACHE_HOME/bigtrain/calibration (~/.cache by default)."""
    explicit = os.environ.get("BIGTRAIN_CALIBRATION_DIR")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "bigtrain" / "calibration"


# --------------------------------------------------------------------------------------------------
# Timing


def _synchronize(device: str) -> None:
    import torch

    from bigtrain.measure.step_loop import synchronize

    synchronize(torch.device(device))


def time_op(op: Callable[[], object], device: str, *, repeats: int, warmup: int) -> list[float]:
    """Seconds per call of `op`, one value per repeat (each repeat runs `op` several times)."""
    for _ in range(warmup):
        op()
    _synchronize(device)
    target_s = TARGET_REPEAT_S["cuda" if device.startswith("cuda") else "cpu"]
    estimate_s = _time_calls(op, device, 1)
    calls = max(1, min(1000, math.ceil(target_s / max(estimate_s, 1e-9))))
    return [_time_calls(op, device, calls) / calls for _ in range(repeats)]


def _time_calls(op: Callable[[], object], device: str, calls: int) -> float:
    if device.startswith("cuda"):
        import torch

        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            op()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0  # ms -> s
    begin = time.perf_counter()
    for _ in range(calls):
        op()
    return time.perf_counter() - begin


@contextlib.contextmanager
def _tf32(enabled: bool) -> Iterator[None]:
    """TF32 on for the tf32 measurement and off for fp32, restored afterwards."""
    import torch

    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def measure_matmul_tflops(device: str, precision: str, size: int, *, repeats: int = 5, warmup: int = 2) -> float:
    """Median TFLOP/s of an n x n x n matrix multiply (2 n^3 FLOPs) in `precision` on `device`."""
    import torch

    dtype = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16,
             "bf16": torch.bfloat16}[precision]
    generator = torch.Generator(device=device).manual_seed(size)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    out = torch.empty(size, size, device=device, dtype=dtype)
    with _tf32(precision == "tf32") if device.startswith("cuda") else contextlib.nullcontext():
        seconds = time_op(lambda: torch.mm(a, b, out=out), device, repeats=repeats, warmup=warmup)
    return 2 * size**3 / statistics.median(seconds) / 1e12


def measure_copy_bandwidth(device: str, nbytes: int, *, repeats: int = 5, warmup: int = 2) -> float:
    """Median bytes/s (read + write) of a device-to-device copy of `nbytes` of random data."""
    import torch

    n = max(1, nbytes // 4)
    generator = torch.Generator(device=device).manual_seed(0)
    src = torch.randn(n, device=device, dtype=torch.float32, generator=generator)
    dst = torch.empty_like(src)
    seconds = time_op(lambda: dst.copy_(src), device, repeats=repeats, warmup=warmup)
    return 2 * n * 4 / statistics.median(seconds)


# --------------------------------------------------------------------------------------------------
# The whole calibration, stored and loaded


def calibrate(
    device: str,
    *,
    sizes: Sequence[int] | None = None,
    repeats: int = 5,
    warmup: int = 2,
    copy_bytes: int | None = None,
    precisions: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Calibration:
    """Measure `device`'s matmul rates and copy bandwidth (does not store them)."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    sizes = tuple(sizes or DEFAULT_SIZES[kind])
    precisions = tuple(precisions or (CUDA_PRECISIONS if kind == "cuda" else CPU_PRECISIONS))
    copy_bytes = copy_bytes or DEFAULT_COPY_BYTES[kind]
    fingerprint = device_fingerprint(device)
    by_size: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    for precision in precisions:
        for size in sizes:
            try:
                tflops = measure_matmul_tflops(device, precision, size, repeats=repeats, warmup=warmup)
            except RuntimeError as exc:  # e.g. a dtype this device's BLAS does not do
                notes.append(f"{precision} n={size}: {exc}")
                continue
            by_size.setdefault(precision, {})[str(size)] = tflops
            if progress:
                progress(f"matmul {precision} n={size}: {tflops:.3f} TFLOP/s")
    try:
        bandwidth = measure_copy_bandwidth(device, copy_bytes, repeats=repeats, warmup=warmup)
        if progress:
            progress(f"copy {copy_bytes / 2**20:.0f} MiB: {bandwidth / 1e9:.1f} GB/s (read + write)")
    except RuntimeError as exc:  # out of memory on a small device
        bandwidth = None
        notes.append(f"copy of {copy_bytes} bytes: {exc}")
    return Calibration(
        device=device,
        device_name=str(fingerprint["device_name"]),
        fingerprint=fingerprint,
        fingerprint_key=fingerprint_key(fingerprint),
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        matmul_tflops={p: max(v.values()) for p, v in by_size.items()},
        matmul_tflops_by_size=by_size,
        copy_bandwidth_bytes_per_s=bandwidth,
        copy_bytes=copy_bytes,
        repeats=repeats,
        notes=tuple(notes),
    )


def calibration_path(fingerprint: Mapping[str, Any]) -> Path:
    """Where the calibration for this fingerprint lives."""
    return calibration_dir() / f"{fingerprint_key(fingerprint)}.json"


def _unwritable(folder: Path, exc: OSError) -> BadInput:
    reason = exc.strerror or str(exc)
    return BadInput(
        f"cannot store calibrations in {folder}: {reason} ({type(exc).__name__}); make it "
        f"writable, or choose another folder with BIGTRAIN_CALIBRATION_DIR=/some/writable/dir"
    )


def check_calibration_dir_writable() -> Path:
    """The calibration folder, created if needed, once a file has been written there; BadInput
    naming the folder, the OS error and BIGTRAIN_CALIBRATION_DIR otherwise. Called before
    measuring, so a read-only cache costs no measurement."""
    folder = calibration_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=folder, prefix=".write-check-", suffix=".tmp"):
            pass
    except OSError as exc:
        raise _unwritable(folder, exc) from None
    return folder


def save_calibration(calibration: Calibration) -> Path:
    """Write atomically (temp file + rename) and return the path; BadInput naming the folder if
    it cannot be written."""
    path = calibration_path(calibration.fingerprint)
    temp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp",
                                         delete=False) as handle:
            temp = handle.name
            json.dump(calibration.to_json(), handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(temp, path)
    except OSError as exc:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        raise _unwritable(path.parent, exc) from None
    return path


def load_calibration(device: str) -> Calibration | None:
    """The stored calibration for this device on this machine fingerprint, or None."""
    try:
        fingerprint = device_fingerprint(device)
    except Exception as exc:  # no such device here: nothing to load
        log.warning("cannot fingerprint %s for calibration: %s", device, exc)
        return None
    path = calibration_path(fingerprint)
    if not path.exists():
        return None
    try:
        calibration = Calibration.from_json(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable calibration %s: %s (run `bigbench calibrate` again)", path, exc)
        return None
    if dict(calibration.fingerprint) != fingerprint:
        log.warning("ignoring calibration %s: it belongs to another machine fingerprint", path)
        return None
    return calibration


def stored_calibration(device: str) -> tuple[Calibration, Path]:
    """The stored calibration for `device` on this machine and its file, without measuring;
    BadInput saying where it looked and how to make one when there is none usable."""
    path = calibration_path(device_fingerprint(device))
    calibration = load_calibration(device)
    if calibration is None:
        state = "is unusable (see the warning above)" if path.exists() else "does not exist"
        raise BadInput(
            f"no stored calibration for {device} on this machine: {path} {state}; "
            f"measure one with `bigbench calibrate --device {device}`"
        )
    return calibration, path
