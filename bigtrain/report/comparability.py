"""Which settings differ between the runs of a report, in plain words.

Machines differ on purpose in a hardware comparison; what should not differ silently is how the
runs were measured (warm-up, window, repeats, seed, timeout) and the software around the
hardware (torch, CUDA, driver, threads, bigtrain and its git commit, a dirty tree). Each
difference is one `Difference` naming the setting and each run's value; the report shows them in
a box and a warning line in its summary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bigtrain.report.data import ReportData, source_names
from bigtrain.results.store import LoadedRun

#: Words for the measure settings a spec records (`spec.measure`); a key not listed here is shown
#: under its own name, so a setting added later is compared too.
MEASURE_WORDS = {
    "warmup_s": ("warm-up time", "s"),
    "duration_s": ("measured window", "s"),
    "min_steps": ("minimum measured steps", ""),
    "repeats": ("repeats per cell", ""),
    "cell_timeout_s": ("cell time-out", "s"),
    "seed": ("random seed", ""),
    "protocol": ("measurement protocol", ""),
}


@dataclass(frozen=True, kw_only=True)
class Difference:
    """A setting whose value is not the same in every run: its words and each run's value."""

    setting: str
    values: tuple[tuple[str, str], ...]

    def sentence(self) -> str:
        """`torch version differs: 2.4.0 on A; 2.5.1 on B.`"""
        by_value: dict[str, list[str]] = {}
        for source, value in self.values:
            by_value.setdefault(value, []).append(source)
        parts = [f"{value} on {', '.join(sources)}" for value, sources in by_value.items()]
        return f"{self.setting} differs: {'; '.join(parts)}."


def _env(key: str) -> Callable[[LoadedRun], Any]:
    return lambda run: (run.manifest.environment or {}).get(key)


def _dirty(run: LoadedRun) -> Any:
    dirty = (run.manifest.environment or {}).get("git_dirty")
    if dirty is None:
        return None
    return "uncommitted changes" if dirty else "clean"


def _commit(run: LoadedRun) -> Any:
    commit = (run.manifest.environment or {}).get("git_commit")
    return str(commit)[:12] if commit else None


#: Software and build settings: (words, how to read it from a run).
SOFTWARE_SETTINGS: tuple[tuple[str, Callable[[LoadedRun], Any]], ...] = (
    ("torch version", _env("torch_version")),
    ("CUDA version", _env("cuda_version")),
    ("cuDNN version", _env("cudnn_version")),
    ("GPU driver", _env("driver_version")),
    ("torch thread count", _env("torch_num_threads")),
    ("Python version", _env("python_version")),
    ("bigtrain version", lambda run: run.manifest.bigtrain_version),
    ("bigtrain git commit", _commit),
    ("source tree", _dirty),
)


def _shown(value: Any, unit: str = "") -> str:
    if value is None:
        return "not recorded"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value} {unit}".strip() if unit else str(value)


def _measure(run: LoadedRun) -> Mapping[str, Any]:
    spec = run.manifest.spec or {}
    measure = spec.get("measure") if isinstance(spec, Mapping) else None
    return measure if isinstance(measure, Mapping) else {}


def differences(data: ReportData) -> list[Difference]:
    """Every measure and software setting that is not the same in all runs (none for one run)."""
    if len(data.runs) < 2:
        return []
    names = source_names(data.runs)
    sources = [names[run.path.resolve()] for run in data.runs]
    found = []
    keys = list(dict.fromkeys(k for run in data.runs for k in _measure(run)))
    for key in keys:
        words, unit = MEASURE_WORDS.get(key, (key.replace("_", " "), ""))
        values = tuple((s, _shown(_measure(run).get(key), unit))
                       for s, run in zip(sources, data.runs, strict=True))
        if len({v for _, v in values}) > 1:
            found.append(Difference(setting=words, values=values))
    for words, read in SOFTWARE_SETTINGS:
        values = tuple((s, _shown(read(run))) for s, run in zip(sources, data.runs, strict=True))
        if len({v for _, v in values}) > 1:
            found.append(Difference(setting=words, values=values))
    return found


def warning_line(found: list[Difference]) -> str | None:
    """The one-line warning for the summary, or None when the runs are comparable."""
    if not found:
        return None
    settings = ", ".join(d.setting for d in found)
    return (f"Warning: the runs differ in {len(found)} setting(s) besides the hardware ({settings}); "
            "see Comparability before reading the speedups as the hardware's alone.")
