"""Time to target in the report: the tables and summary lines for converge records.

`bigbench converge` trains each cell from several seeds (its repeats) until a held-out target is
reached, a budget runs out (`not_reached`) or the loss diverges. Here those records become:

- `converge`: per setting (a cell at one learning rate), steps, seconds and, where NVML measured
  it, joules to the target: the median over seeds with the fastest and slowest seed;
- `converge_effects`: batch norm on over off, and each precision over fp32, on steps and seconds
  to target, paired on every other axis and the learning rate;
- `not_reached`: every converge record that did not reach its target (not reached, diverged,
  failed), with its best value against the target and the reason; never hidden;
- `curves`: the long-form learning curves (tables/curves.csv only: too long to read in a page).

A seed that never reached the target counts as never (an infinite time), so the median over seeds
is a time only when more than half of the seeds got there; the fastest seed is shown beside it.
Step-time-only reports get none of this (`convergence_tables` returns nothing). Analysing side:
pandas, never torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bigtrain.report.data import CONFIG_AXES, ReportData, axis_value_label
from bigtrain.report.tables import RATIO_MARK, Table
from bigtrain.results.curves import curve_frame
from bigtrain.results.frame import CONVERGE_PROTOCOL
from bigtrain.results.schema import AXES, STATUS_OK
from bigtrain.results.tuning import ROLE_TRIAL

#: What makes one converge setting: a cell (its axes, matched across runs) at one learning rate,
#: on one machine. Its seeds are the repeats.
SETTING_KEYS = ("source", "match_key", "lr_used")
#: Axes a setting's configuration leaves out: the model names the figure, the optimizer and lr
#: name the line (`lr_used`), the device is the machine.
NOT_CONFIG_AXES = ("model", "optimizer", "impl", "schedule", "device", "lr")
#: The converge fields that hold numbers (null where a record has none).
NUMERIC_FIELDS = ("seed", "lr_used", "target_value", "steps_to_target", "time_to_target_s",
                  "energy_to_target_j", "data_time_s", "eval_time_s", "best_value", "final_value",
                  "final_eval_loss")
#: Axes shown in the converge tables when they vary (model and optimizer always).
SHOWN_AXES = ("precision", "batch_norm", "batch_size", "compile")
#: Labels copied onto each setting from its first record.
SETTING_LABELS = ("cell_id", *AXES, "opt_label", "setting_config", "target_metric",
                  "target_value", "target_direction")


# -- pure statistics -----------------------------------------------------------------------------
def median_counting_never(reached: Sequence[float], seeds: int) -> float:
    """The median over `seeds` seeds where only `reached` got there: the others count as never.

    NaN (not reached) unless more than half of the seeds reached the target; then the usual
    median of the padded list (for an even count, the mean of the middle two).
    """
    values = sorted(float(v) for v in reached if v is not None and not math.isnan(v))
    if seeds <= 0 or len(values) > seeds:
        raise ValueError(f"{len(values)} reaching values for {seeds} seeds")
    padded = values + [math.inf] * (seeds - len(values))
    middle = seeds // 2
    median = padded[middle] if seeds % 2 else (padded[middle - 1] + padded[middle]) / 2
    return median if math.isfinite(median) else math.nan


def median_band(curves: Sequence[tuple[Sequence[float], Sequence[float]]],
                grid: Sequence[float]) -> pd.DataFrame:
    """Median, min and max over seeds of curves (x ascending, y) on a common x grid.

    Each curve is interpolated linearly between its own evaluations and is absent outside them, so
    at each grid point the statistics are over the seeds still training there (`seeds` says how
    many). Returns columns x, median, low, high, seeds; grid points no curve covers are dropped.
    """
    grid_x = np.asarray(grid, dtype=float)
    stacked = np.full((len(curves), len(grid_x)), np.nan)
    for row, (xs, ys) in enumerate(curves):
        x = np.asarray(xs, dtype=float)
        y = np.asarray(ys, dtype=float)
        keep = ~(np.isnan(x) | np.isnan(y))
        x, y = x[keep], y[keep]
        if len(x) == 0:
            continue
        inside = (grid_x >= x[0]) & (grid_x <= x[-1])
        stacked[row, inside] = np.interp(grid_x[inside], x, y)
    counts = np.sum(~np.isnan(stacked), axis=0)
    covered = counts > 0
    picked = stacked[:, covered]
    return pd.DataFrame({
        "x": grid_x[covered],
        "median": np.nanmedian(picked, axis=0) if picked.size else [],
        "low": np.nanmin(picked, axis=0) if picked.size else [],
        "high": np.nanmax(picked, axis=0) if picked.size else [],
        "seeds": counts[covered],
    })


# -- the converge part of the frame --------------------------------------------------------------
def converge_records(data: ReportData) -> pd.DataFrame:
    """The rows of the report's frame that a converge run wrote (empty for step-time runs), with
    `setting_config`: the configuration a setting is drawn and named under (`setting_configs`)."""
    frame = data.frame
    if frame.empty or "protocol" not in frame:
        return frame.iloc[0:0].assign(setting_config=pd.Series(dtype="str"))
    rows = frame[frame["protocol"] == CONVERGE_PROTOCOL]
    if "tune_role" in rows:  # an lr search's trials are not results (bigtrain.results.tuning)
        rows = rows[rows["tune_role"] != ROLE_TRIAL]
    # A field null in every record of the runs (no seed reached: steps_to_target) comes out of
    # the frame as object; numbers it is, so medians and ratios work on it.
    numeric = {c: pd.to_numeric(rows[c], errors="coerce") for c in NUMERIC_FIELDS if c in rows}
    return rows.assign(**numeric, setting_config=setting_configs(rows))


def setting_configs(rows: pd.DataFrame) -> pd.Series:
    """Per row, the axes that vary within its model, labelled (`BN on · bf16`), or `all`.

    Like the report's `config_in_model`, but never the learning rate (an `lr` axis, where runs
    have one): the lr is named from `lr_used` beside the optimizer, so it is not said twice.
    """
    out = pd.Series("all", index=rows.index, dtype="str")
    for _, group in rows.groupby("model", sort=False):
        axes = [a for a in CONFIG_AXES if a not in NOT_CONFIG_AXES and a in group
                and group[a].astype(str).nunique() > 1]
        if not axes:
            continue
        parts = [group[a].map(lambda v, a=a: axis_value_label(a, v)) for a in axes]
        label = parts[0]
        for part in parts[1:]:
            label = label + " · " + part
        out[group.index] = label
    return out


def has_convergence(data: ReportData) -> bool:
    """True when the report holds converge records (and so gets the time-to-target section)."""
    return not converge_records(data).empty


def lr_label(lr: object) -> str:
    """`lr 0.001`; `lr ?` for a record that did not say which learning rate it used."""
    if lr is None or (isinstance(lr, float) and math.isnan(lr)):
        return "lr ?"
    return f"lr {float(lr):g}"


def target_label(metric: object, direction: object, value: object) -> str:
    """`accuracy ≥ 0.95` (higher is better) or `loss ≤ 0.1` (lower is better)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "no target"
    sign = "≥" if direction == "max" else "≤" if direction == "min" else "vs"
    return f"{metric or 'metric'} {sign} {float(value):g}"


def setting_label(row: pd.Series, with_model: bool = True) -> str:
    """`cnn:tiny · BN on · adam · lr 0.001`: one converge setting, as figures and lines name it."""
    parts = [str(row["model"])] if with_model else []
    if row["setting_config"] != "all":
        parts.append(str(row["setting_config"]))
    parts += [str(row["opt_label"]), lr_label(row["lr_used"])]
    return " · ".join(parts)


def settings_frame(data: ReportData) -> pd.DataFrame:
    """One row per converge setting (source, cell, learning rate) over its seeds.

    Columns: the setting's labels, `seeds`, `reached`, `diverged`, and for steps, seconds and
    joules to target the median counting never (`*_median`), the fastest seed (`*_min`) and the
    slowest seed that reached (`*_max`); `data_share_pct` (median share of time to target spent
    loading data), `best_median` and `final_median` (held-out metric over every seed).
    """
    rows = converge_records(data)
    if rows.empty:
        return pd.DataFrame()
    out = []
    for _, seeds in rows.groupby(list(SETTING_KEYS), sort=False, dropna=False, observed=True):
        first = seeds.iloc[0]
        reached = seeds[(seeds["status"] == STATUS_OK) & seeds["steps_to_target"].notna()]
        row = {key: first[key] for key in (*SETTING_KEYS, *SETTING_LABELS)}
        row["source"] = str(first["source"])
        row["seeds"] = len(seeds)
        row["reached"] = len(reached)
        row["diverged"] = int((seeds["status"] == "diverged").sum())
        for metric, column in (("steps", "steps_to_target"), ("seconds", "time_to_target_s"),
                               ("joules", "energy_to_target_j")):
            values = reached[column].dropna().astype(float).tolist()
            measured = len(values) == len(reached)  # joules: only where every reaching seed has it
            row[f"{metric}_median"] = (median_counting_never(values, len(seeds))
                                       if values and measured else math.nan)
            row[f"{metric}_min"] = min(values) if values else math.nan
            row[f"{metric}_max"] = max(values) if values else math.nan
        share = (reached["data_time_s"] / reached["time_to_target_s"]).dropna()
        row["data_share_pct"] = 100 * float(share.median()) if not share.empty else math.nan
        row["best_median"] = float(seeds["best_value"].median())
        row["final_median"] = float(seeds["final_value"].median())
        out.append(row)
    frame = pd.DataFrame(out)
    order = [data.sources.index(s) if s in data.sources else len(data.sources)
             for s in frame["source"]]
    frame = frame.assign(_order=order).sort_values(
        ["_order", "model", "setting_config", "opt_label", "lr_used"], kind="stable")
    return frame.drop(columns="_order").reset_index(drop=True)


def _shown_axes(frame: pd.DataFrame) -> list[str]:
    return [a for a in SHOWN_AXES if a in frame and frame[a].astype(str).nunique() > 1]


def _identity(frame: pd.DataFrame, data: ReportData) -> pd.DataFrame:
    """The columns that name a setting in a table: source (if several), model, optimizer, lr, and
    the axes that vary among the report's converge records (the same columns in every table)."""
    columns: dict[str, pd.Series] = {}
    if len(data.sources) > 1:
        columns["source"] = frame["source"]
    columns["model"] = frame["model"]
    columns["optimizer"] = frame["opt_label"]
    columns["lr"] = frame["lr_used"]
    for axis in _shown_axes(converge_records(data)):
        columns[axis.replace("_", " ")] = frame[axis]
    return pd.DataFrame(columns)


# -- tables --------------------------------------------------------------------------------------
def time_to_target_table(data: ReportData, settings: pd.DataFrame) -> Table | None:
    """Steps, seconds (and joules) to target per setting: median over seeds, fastest, slowest."""
    if settings.empty:
        return None
    frame = _identity(settings, data)
    frame["target"] = [target_label(m, d, v) for m, d, v in zip(
        settings["target_metric"], settings["target_direction"], settings["target_value"],
        strict=True)]
    frame["seeds reached"] = [f"{r}/{n}" for r, n in zip(settings["reached"], settings["seeds"],
                                                          strict=True)]
    frame["steps to target"] = settings["steps_median"]
    frame["steps min"] = settings["steps_min"]
    frame["steps max"] = settings["steps_max"]
    frame["time to target (s, median)"] = settings["seconds_median"]
    frame["time (s, min)"] = settings["seconds_min"]
    frame["time (s, max)"] = settings["seconds_max"]
    notes = []
    if settings["joules_median"].notna().any() or settings["joules_min"].notna().any():
        frame["energy to target (J, median)"] = settings["joules_median"]
        frame["energy (J, min)"] = settings["joules_min"]
        frame["energy (J, max)"] = settings["joules_max"]
        if settings["joules_min"].isna().any():
            notes.append("Energy is blank where no GPU energy counter was read (CPU runs, or NVML "
                         "without an energy counter).")
    else:
        notes.append("Energy to target is not shown: no run measured GPU energy (NVML); CPU runs "
                     "record none.")
    frame["data loading (% of time)"] = settings["data_share_pct"]
    frame["best held-out value (median)"] = settings["best_median"]
    notes.append("A seed that did not reach the target counts as never: the median is blank "
                 "unless more than half of the seeds reached it; min and max are over the seeds "
                 "that did.")
    return Table(
        "converge",
        "Time to target",
        "Optimizer steps, wall seconds (data loading included, held-out evaluation excluded) and "
        "GPU energy until the held-out target was first reached: median over seeds, with the "
        "fastest and slowest seed; fewer is better.",
        frame,
        notes=tuple(notes),
    )


def effects_frame(settings: pd.DataFrame, axis: str, reference: str) -> pd.DataFrame:
    """Each setting with `axis` != `reference` beside its pair at `reference`, every other axis, the
    learning rate and the source equal; columns `*_with` and `*_reference` plus the ratios."""
    if settings.empty or axis not in settings:
        return pd.DataFrame()
    values = settings[axis].astype(str)
    if reference not in set(values) or values.nunique() < 2:
        return pd.DataFrame()
    held = ["source", *[a for a in AXES if a not in (axis, "device")], "lr_used"]
    table = settings.assign(**{axis: values, "lr_used": settings["lr_used"].fillna(-1.0)})
    columns = [*held, "steps_median", "seconds_median", "reached", "seeds"]
    ref = table[table[axis] == reference][columns]
    rest = table[table[axis] != reference]
    merged = rest.merge(ref, on=held, suffixes=("", "_reference"))
    if merged.empty:
        return merged
    merged["lr_used"] = merged["lr_used"].where(merged["lr_used"] >= 0)
    merged["steps_ratio"] = merged["steps_median"] / merged["steps_median_reference"]
    merged["seconds_ratio"] = merged["seconds_median"] / merged["seconds_median_reference"]
    return merged


def effects_table(data: ReportData, settings: pd.DataFrame) -> Table | None:
    """Batch norm on over off and each precision over fp32, on steps and seconds to target."""
    parts = []
    for axis, reference, name in (("batch_norm", "off", "batch norm on vs off"),
                                  ("precision", "fp32", "precision {} vs fp32")):
        merged = effects_frame(settings, axis, reference)
        if merged.empty:
            continue
        frame = _identity(merged, data)
        frame = frame.drop(columns=[axis.replace("_", " ")], errors="ignore")
        frame.insert(0, "change", [name.format(v) for v in merged[axis]])
        frame["seeds reached"] = [f"{a}/{b} vs {c}/{d}" for a, b, c, d in zip(
            merged["reached"], merged["seeds"], merged["reached_reference"],
            merged["seeds_reference"], strict=True)]
        frame["steps with"] = merged["steps_median"]
        frame["steps reference"] = merged["steps_median_reference"]
        frame[f"steps with / reference {RATIO_MARK}"] = merged["steps_ratio"]
        frame["time (s, with)"] = merged["seconds_median"]
        frame["time (s, reference)"] = merged["seconds_median_reference"]
        frame[f"time with / reference {RATIO_MARK}"] = merged["seconds_ratio"]
        parts.append(frame)
    if not parts:
        return None
    frame = pd.concat(parts, ignore_index=True)
    return Table(
        "converge_effects",
        "Batch norm and precision: steps and time to target",
        "Median steps and seconds to target with the change over without (BN off, fp32), every "
        "other axis and the learning rate equal: below 1× the change reaches the target sooner; "
        "blank where either side did not reach it in most seeds.",
        frame,
    )


def not_reached_frame(data: ReportData) -> pd.DataFrame:
    """Every converge record that did not reach its target, with how far it got (steps, seconds
    from its curve), its best value against the target, and the reason."""
    rows = converge_records(data)
    bad = rows[rows["status"] != STATUS_OK]
    if bad.empty:
        return bad
    curves = curve_frame(data.runs)
    if not curves.empty:
        ran = curves.groupby(["run_path", "cell_id", "repeat"])[["step", "wall_s"]].max()
        bad = bad.join(ran, on=["run_path", "cell_id", "repeat"])
    else:
        bad = bad.assign(step=math.nan, wall_s=math.nan)
    return bad.sort_values(["source", "model", "setting_config", "opt_label", "lr_used", "seed"],
                           kind="stable")


def not_reached_table(data: ReportData) -> Table | None:
    """Converge records that never reached the target: best value vs target, and why."""
    if not has_convergence(data):
        return None
    bad = not_reached_frame(data)
    if bad.empty:
        frame = pd.DataFrame(columns=["model", "optimizer", "lr", "seed", "status", "target",
                                      "best value", "reason"])
    else:
        frame = _identity(bad, data)
        frame["seed"] = bad["seed"]
        frame["status"] = bad["status"]
        frame["target"] = [target_label(m, d, v) for m, d, v in zip(
            bad["target_metric"], bad["target_direction"], bad["target_value"], strict=True)]
        frame["best value"] = bad["best_value"]
        frame["final value"] = bad["final_value"]
        frame["steps run"] = bad["step"]
        frame["seconds run"] = bad["wall_s"]
        frame["reason"] = bad["reason"]
    return Table(
        "not_reached",
        "Cells that did not reach the target",
        "Every seed that did not reach its held-out target (budget spent, diverged or failed), "
        "with the best value it saw against the target and the reason; none are left out of the "
        "tables above, where they count as never.",
        frame.reset_index(drop=True),
    )


def curves_table(data: ReportData) -> Table | None:
    """The long-form curves (tables/curves.csv): a row per cell, seed and evaluation."""
    curves = curve_frame(data.runs)
    if curves.empty:
        return None
    labels = data.frame[["run_path", "cell_id", "repeat", "source", "opt_label"]]
    frame = curves.merge(labels, on=["run_path", "cell_id", "repeat"], how="left")
    first = ["source", "run_id", "cell_id", "repeat", "seed", "model", "opt_label"]
    rest = [c for c in frame.columns if c not in (*first, "run_path")]
    return Table(
        "curves",
        "Learning curves",
        "Every evaluation of every converge seed: step, wall seconds, train loss, held-out loss "
        "and metric.",
        frame[[*first, *rest]],
        in_markdown=False,
    )


def convergence_tables(data: ReportData) -> list[Table]:
    """The time-to-target tables, in reading order; none for a report without converge records."""
    if not has_convergence(data):
        return []
    settings = settings_frame(data)
    built = (time_to_target_table(data, settings), effects_table(data, settings),
             not_reached_table(data), curves_table(data))
    return [t for t in built if t is not None]


# -- the summary ---------------------------------------------------------------------------------
def headline_lines(data: ReportData) -> list[str]:
    """Per machine and model: the setting fastest to the target, the one with fewest steps, and
    how many settings reached it in no seed (or most seeds did not)."""
    settings = settings_frame(data)
    if settings.empty:
        return []
    several = len(set(settings["source"])) > 1
    lines = []
    for (source, model), rows in settings.groupby(["source", "model"], sort=False):
        where = f"{model} on {source}" if several else str(model)
        targets = sorted({target_label(m, d, v) for m, d, v in zip(
            rows["target_metric"], rows["target_direction"], rows["target_value"], strict=True)})
        head = f"Time to target, {where} ({'; '.join(targets)}, median over seeds): "
        reached = rows[rows["seconds_median"].notna()]
        missed = len(rows) - len(reached)
        tail = (f"; {missed} of {len(rows)} settings did not reach it in most seeds"
                if missed else f"; all {len(rows)} settings reached it")
        if reached.empty:
            lines.append(head + f"no setting reached it in most seeds ({len(rows)} settings).")
            continue
        fastest = reached.loc[reached["seconds_median"].idxmin()]
        text = (f"fastest {setting_label(fastest, with_model=False)} in "
                f"{fastest['seconds_median']:.3g} s ({fastest['steps_median']:g} steps, "
                f"{fastest['reached']}/{fastest['seeds']} seeds)")
        fewest = reached.loc[reached["steps_median"].idxmin()]
        if fewest["steps_median"] < fastest["steps_median"]:
            text += (f"; fewest steps {setting_label(fewest, with_model=False)} "
                     f"({fewest['steps_median']:g} steps, {fewest['seconds_median']:.3g} s)")
        lines.append(head + text + tail + ".")
    return lines
