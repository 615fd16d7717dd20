"""The report's view of one or more runs: the tidy frame plus the labels every table and figure uses.

A *source* is one run, named after its machine (with the run id added when two runs share a
machine). A *config* is a cell's axes other than the optimizer; the optimizer (with its
implementation) is what figures colour by, so the same optimizer has the same colour everywhere.
Never imports torch or pynvml.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from bigtrain.cells.axes import (
    AXIS_NAMES,
    OPTIMIZER_ALONE_STYLE,
    OPTIMIZER_STYLE,
    cell_label,
    value_label,
)
from bigtrain.common.errors import BadInput
from bigtrain.report.style import natural_key
from bigtrain.results.frame import frame_of_runs
from bigtrain.results.schema import AXES
from bigtrain.results.store import LoadedRun, load_run

#: Axes shown in a config label, in this order, when they vary within the report; an axis the
#: table gains later follows these (the optimizer, its implementation and its lr schedule are the
#: colour instead: a leaderboard ranks `adamw cosine` beside `schedulefree-adamw`, not apart).
_CONFIG_ORDER = ("model", "precision", "batch_norm", "batch_size", "compile", "device")
_CONTENDER_AXES = ("optimizer", "impl", "schedule")
CONFIG_AXES = (*_CONFIG_ORDER,
               *(a for a in AXIS_NAMES if a not in _CONFIG_ORDER and a not in _CONTENDER_AXES))


@dataclass(frozen=True)
class ReportData:
    """Everything the tables and figures read: the runs, the labelled frame, the baseline."""

    runs: tuple[LoadedRun, ...]
    frame: pd.DataFrame
    sources: tuple[str, ...]
    baseline: str | None
    #: USD per hour of the sources the user priced (`--price`); never guessed for the others.
    prices_usd_per_h: Mapping[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> pd.DataFrame:
        """Rows whose cell measured fine."""
        return self.frame[self.frame["status"] == "ok"]

    @cached_property
    def summary(self) -> pd.DataFrame:
        """`cell_summary` of this data, computed once (every table and figure reads it)."""
        return cell_summary(self)


def load_report_data(run_dirs: Sequence[Path], baseline: Path | None = None,
                     prices_usd_per_h: Mapping[str, float] | None = None) -> ReportData:
    """Load the runs (and the baseline, if it is not among them) into one labelled frame.

    `prices_usd_per_h` (machine name -> USD per hour, as `parse_prices` reads `--price`) is
    matched to the runs' machines; BadInput names an entry that matches none.
    """
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise BadInput("no run folders given; pass at least one results/<run_id> folder")
    if baseline is not None and Path(baseline).resolve() not in {p.resolve() for p in paths}:
        paths.insert(0, Path(baseline))
    runs = tuple(load_run(p) for p in paths)
    frame = label_frame(frame_of_runs(runs), runs)
    sources = tuple(dict.fromkeys(frame["source"].tolist())) if not frame.empty else ()
    sources = tuple(dict.fromkeys([*sources, *source_names(runs).values()]))
    baseline_source = None
    if baseline is not None:
        baseline_source = source_names(runs)[Path(baseline).resolve()]
    elif len(sources) > 1:
        # Without --baseline, every other run is compared with the first one named.
        baseline_source = sources[0]
    prices: dict[str, float] = {}
    if prices_usd_per_h:
        from bigtrain.report.prices import match_prices

        names = source_names(runs)
        prices = match_prices(prices_usd_per_h, {names[r.path.resolve()]: r for r in runs})
    return ReportData(runs=runs, frame=frame, sources=sources, baseline=baseline_source,
                      prices_usd_per_h=prices)


def source_names(runs: Sequence[LoadedRun]) -> dict[Path, str]:
    """Each run's source name: the machine, plus the run id where machines repeat."""
    from bigtrain.results.frame import machine_label

    machines = [machine_label(r.manifest.environment) for r in runs]
    names: dict[Path, str] = {}
    for run, machine in zip(runs, machines, strict=True):
        name = machine if machines.count(machine) == 1 else f"{machine} [{run.manifest.run_id}]"
        names[run.path.resolve()] = name
    return names


def label_frame(frame: pd.DataFrame, runs: Sequence[LoadedRun]) -> pd.DataFrame:
    """Add the source, optimizer, config and cell labels to a frame from `frame_of_runs`."""
    frame = frame.copy()
    names = source_names(runs)
    frame["source"] = [names[Path(p).resolve()] for p in frame["run_path"]]
    if "node_id" in frame and frame["node_id"].notna().any():
        # A cluster run spans machines: its cells are grouped by the chip that ran them.
        on_node = frame["node_id"].notna()
        frame.loc[on_node, "source"] = (frame.loc[on_node, "machine"].astype(str) + " ["
                                        + frame.loc[on_node, "run_id"].astype(str) + "]")
    if frame.empty:
        for column in ("match_key", "opt_label", "config", "config_in_model", "cell_label"):
            frame[column] = pd.Series(dtype="str")
        return frame
    # Runs on different machines name their device differently (cuda:0 vs cpu), so cells are
    # matched across runs by every axis except the device -- unless a run swept several devices.
    one_device_each = bool((frame.groupby("source")["device"].nunique() <= 1).all())
    match_axes = [a for a in AXES if a != "device"] if one_device_each else list(AXES)
    frame["match_key"] = frame[match_axes].astype(str).agg("|".join, axis=1)
    # The implementation joins the optimizer's name only when the report holds more than one.
    several_impls = frame["impl"].astype(str).nunique() > 1
    style = OPTIMIZER_STYLE if several_impls else OPTIMIZER_ALONE_STYLE
    frame["opt_label"] = [
        cell_label({"optimizer": opt, "impl": impl}, style)
        for opt, impl in zip(frame["optimizer"], frame["impl"], strict=True)
    ]
    # The schedule joins it, written out (`constant` too), only when the report holds several.
    if "schedule" in frame and frame["schedule"].astype(str).nunique() > 1:
        frame["opt_label"] = frame["opt_label"] + " " + frame["schedule"].astype(str)
    varying = [
        a for a in CONFIG_AXES if a in match_axes and frame[a].astype(str).nunique() > 1
    ]
    frame["config"] = _config_labels(frame, varying or ["model"])
    # Within a model, name only the axes that vary for that model (an MLP has no batch norm).
    frame["config_in_model"] = "all"
    for _, rows in frame.groupby("model", sort=False):
        in_model = [
            a for a in varying if a != "model" and rows[a].astype(str).nunique() > 1
        ]
        if in_model:
            frame.loc[rows.index, "config_in_model"] = _config_labels(rows, in_model)
    frame["cell_label"] = frame["config"] + " · " + frame["opt_label"]
    return frame


def _config_labels(frame: pd.DataFrame, axes: Sequence[str]) -> pd.Series:
    parts = [frame[a].map(lambda v, a=a: axis_value_label(a, v)) for a in axes]
    label = parts[0]
    for part in parts[1:]:
        label = label + " · " + part
    return label


def axis_value_label(axis: str, value: object) -> str:
    """A short readable label for one axis value (`BN on`, `bs 32`), as the axis table words it."""
    return value_label(axis, value)


def cell_summary(data: ReportData) -> pd.DataFrame:
    """One row per (source, cell) over the ok repeats: medians of the metrics, repeat count.

    Repeats of a cell are summarised by their median so one slow repeat does not move the figure.
    """
    ok = data.ok
    keys = ["source", "match_key"]
    labels = ["cell_id", *AXES, "opt_label", "config", "config_in_model", "cell_label", "item_unit"]
    if ok.empty:
        return pd.DataFrame(columns=[*keys, *labels, "repeats"])
    ok = ok.assign(**{c: _flags_as_numbers(ok[c]) for c in ok.columns if _is_flag(ok[c])})
    numeric = [
        c
        for c in ok.columns
        if c not in keys and c not in labels and c != "repeat" and pd.api.types.is_numeric_dtype(ok[c])
    ]
    flags = [c for c in numeric if c in ok.columns and _is_flag(data.ok[c])]
    grouped = ok.groupby(keys, sort=False)
    summary = grouped[[c for c in numeric if c not in flags]].median()
    # A flag such as telemetry_valid holds for the cell only if it held for every repeat.
    for flag in flags:
        summary[flag] = grouped[flag].min()
    summary["repeats"] = grouped.size()
    if "step_time_median_s" in summary:
        summary["step_time_median_s"] = step_time_from_throughput(summary)
    firsts = grouped[labels].first()
    out = firsts.join(summary).reset_index()
    out["source"] = pd.Categorical(out["source"], categories=list(data.sources), ordered=True)
    order = sorted(range(len(out)), key=lambda i: (
        out["source"].cat.codes.iloc[i], *(natural_key(out[c].iloc[i]) for c in
                                            ("model", "config", "opt_label"))))
    return out.iloc[order].reset_index(drop=True)


def step_time_from_throughput(summary: pd.DataFrame) -> pd.Series:
    """A cell's median step time as its items per step over its throughput (both over repeats).

    Each record's items/s is items_per_step / its step-time median, so the median over repeats of
    either one picks the same repeat when the count is odd; with an even count each median averages
    the two middle repeats of a different quantity, and 1/mean(t) is not mean(1/t): the throughput
    and step-time tables disagreed (by 2.6x on a noisy pair). Deriving the step time from the
    throughput (what every speedup is computed from) makes the two tables say the same thing;
    a cell without items per step keeps the median of its step-time medians.
    """
    if "items_per_step" not in summary or "items_per_s" not in summary:
        return summary["step_time_median_s"]
    derived = summary["items_per_step"] / summary["items_per_s"]
    usable = summary["items_per_s"].gt(0) & derived.notna()
    return derived.where(usable, summary["step_time_median_s"])


def _is_flag(column: pd.Series) -> bool:
    """A column of booleans (maybe with nulls), like telemetry_valid."""
    if pd.api.types.is_bool_dtype(column):
        return True
    values = column.dropna()
    return column.dtype == object and not values.empty and all(isinstance(v, bool) for v in values)


def _flags_as_numbers(column: pd.Series) -> pd.Series:
    """True/False/None as 1.0/0.0/NaN, so flags aggregate like numbers."""
    return column.map(lambda v: float(v) if isinstance(v, bool) else float("nan")).astype(float)
