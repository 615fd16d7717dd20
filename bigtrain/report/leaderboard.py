"""The tuned leaderboard (`bigbench converge --tune-lr`): per model and target, optimizers ranked
by time to target at the lr their search chose, with the tuning it took beside it.

Per search (a `tune_group`: one optimizer and configuration on one machine), from its final
records (fresh seeds at the lr chosen; the trials are only in the tuning table):

- time and steps to target: the median over seeds counting a seed that never got there as never
  (`median_counting_never`, as the time-to-target table), with the fastest and slowest seed;
  energy to target where NVML measured it;
- the step cost (median step time) and, where recorded, the optimizer state bytes, each also over
  AdamW's in the same model and configuration when AdamW was tuned beside it;
- the tuning cost: seconds (and joules) of every trial, the trials run of those planned, and
  whether the budget stopped the search.

Ranked by that median (not reached last, never left out). A winner is named only when the
leader reached the target from every seed and the runner-up is behind beyond the noise: it
reached the target from none of its seeds (two or more a side), or
`bigtrain.compare.stats.decide` (the test `bigbench compare` gates time to target with, same
threshold and alpha) finds it slower. Otherwise the table says there is no winner and why.
Analysing side: pandas, never torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from bigtrain.report.convergence import (
    converge_records,
    median_counting_never,
    target_label,
)
from bigtrain.report.data import ReportData
from bigtrain.report.tables import RATIO_MARK, Table
from bigtrain.results.schema import STATUS_OK
from bigtrain.results.tuning import ROLE_FINAL, ROLE_TRIAL

#: The optimizer step cost and state memory are shown relative to this one, where it ran.
REFERENCE_OPTIMIZER = "adamw"
#: The leaderboard's groups: one ranking per machine, model, configuration and target.
BOARD_KEYS = ("source", "model", "setting_config", "target")

WINNER = "winner"
NO_WINNER = "no winner"


def final_records(data: ReportData) -> pd.DataFrame:
    """The final records of the report's lr searches (empty when no run was tuned)."""
    rows = converge_records(data)
    if rows.empty or "tune_role" not in rows:
        return rows.iloc[0:0]
    rows = rows[rows["tune_role"] == ROLE_FINAL]
    return rows.assign(target=[target_label(m, d, v) for m, d, v in zip(
        rows["target_metric"], rows["target_direction"], rows["target_value"], strict=True)])


def _number(row: pd.Series, column: str) -> float:
    value = row.get(column)
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


def search_frame(data: ReportData) -> pd.DataFrame:
    """One row per search over its final seeds: the medians, spread and tuning cost (see the
    module docstring), unranked."""
    finals = final_records(data)
    if finals.empty:
        return pd.DataFrame()
    tried = _lrs_tried(data)
    out = []
    for _, seeds in finals.groupby(["source", "tune_group"], sort=False, observed=True):
        first = seeds.iloc[0]
        reached = seeds[(seeds["status"] == STATUS_OK) & seeds["time_to_target_s"].notna()]
        row = {key: first[key] for key in (*BOARD_KEYS, "tune_group", "optimizer", "opt_label")}
        row["schedule"] = first.get("schedule", "constant")
        row.update(seeds=len(seeds), reached=len(reached), tuned_lr=_number(first, "tuned_lr"),
                   seed_times_s=tuple(float(v) for v in reached["time_to_target_s"]))
        row["grid_edge"] = grid_edge(row["tuned_lr"],
                                     tried.get((first["source"], first["tune_group"]), ()))
        for name, column in (("seconds", "time_to_target_s"), ("steps", "steps_to_target"),
                             ("joules", "energy_to_target_j")):
            values = pd.to_numeric(reached[column], errors="coerce").dropna().tolist()
            complete = len(values) == len(reached) and values
            row[f"{name}_median"] = (median_counting_never(values, len(seeds)) if complete
                                     else math.nan)
            row[f"{name}_min"] = min(values) if values else math.nan
            row[f"{name}_max"] = max(values) if values else math.nan
        step = pd.to_numeric(seeds.get("step_time_median_s"), errors="coerce")
        row["step_s"] = float(step.median()) if step is not None and step.notna().any() else math.nan
        state = (pd.to_numeric(seeds["optimizer_state_bytes"], errors="coerce")
                 if "optimizer_state_bytes" in seeds else None)
        row["state_bytes"] = (float(state.median()) if state is not None and state.notna().any()
                              else math.nan)
        for column in ("tuning_cost_s", "tuning_cost_j", "tune_trials", "tune_trials_planned",
                       "tune_budget_s"):
            row[column] = _number(first, column)
        row["tune_stop"] = first.get("tune_stop")
        out.append(row)
    return _relative_to_reference(pd.DataFrame(out))


def _lrs_tried(data: ReportData) -> dict[tuple[str, str], tuple[float, ...]]:
    """(source, tune group) -> the lrs its trials ran at."""
    frame = data.frame
    if frame.empty or "tune_role" not in frame:
        return {}
    trials = frame[frame["tune_role"] == ROLE_TRIAL]
    lrs = pd.to_numeric(trials["lr_used"], errors="coerce")
    return {key: tuple(float(v) for v in values.dropna())
            for key, values in lrs.groupby([trials["source"], trials["tune_group"]], sort=False)}


def grid_edge(tuned_lr: float, tried: Sequence[float]) -> str:
    """`highest tried` / `lowest tried` when the lr chosen sits at an end of the lrs its search
    tried (the best lr may lie beyond it: more trials would tell), else empty."""
    if len(tried) < 2 or not math.isfinite(tuned_lr):
        return ""
    if tuned_lr >= max(tried):
        return "highest tried"
    if tuned_lr <= min(tried):
        return "lowest tried"
    return ""


def _relative_to_reference(frame: pd.DataFrame) -> pd.DataFrame:
    """Step cost and state bytes over the reference optimizer's in the same board (NaN where it
    did not run, or did not record the figure)."""
    frame = frame.assign(step_vs_ref=math.nan, state_vs_ref=math.nan)
    for _, board in frame.groupby(list(BOARD_KEYS), sort=False, dropna=False):
        ref = board[board["optimizer"].astype(str) == REFERENCE_OPTIMIZER]
        if ref.empty:
            continue
        # A step's cost and the state do not depend on the lr schedule; take constant's if run.
        if "schedule" in ref:
            ref = ref.sort_values("schedule", key=lambda s: s.astype(str) != "constant",
                                  kind="stable")
        for column, ratio in (("step_s", "step_vs_ref"), ("state_bytes", "state_vs_ref")):
            base = float(ref.iloc[0][column])
            if math.isfinite(base) and base > 0:
                frame.loc[board.index, ratio] = board[column] / base
    return frame


def rank(board: pd.DataFrame) -> pd.DataFrame:
    """One board's searches, best first: median time to target (not reached last), then median
    steps, then the fastest seed; a `rank` column from 1."""
    ordered = board.assign(
        _never=board["seconds_median"].isna(),
        _seconds=board["seconds_median"].fillna(math.inf),
        _steps=board["steps_median"].fillna(math.inf),
        _fastest=board["seconds_min"].fillna(math.inf),
    ).sort_values(["_never", "_seconds", "_steps", "_fastest", "opt_label"], kind="stable")
    ordered = ordered.drop(columns=["_never", "_seconds", "_steps", "_fastest"])
    return ordered.assign(rank=range(1, len(ordered) + 1)).reset_index(drop=True)


def winner_verdict(leader: pd.Series, runner_up: pd.Series | None) -> tuple[str, str]:
    """(WINNER or NO_WINNER, why) for a ranked board's first two searches."""
    if leader["reached"] < leader["seeds"] or not math.isfinite(leader["seconds_median"]):
        return NO_WINNER, (f"the fastest, {leader['opt_label']}, reached the target from "
                           f"{leader['reached']} of {leader['seeds']} seeds")
    if runner_up is None:
        return NO_WINNER, "only one optimizer was tuned here"
    if runner_up["reached"] == 0 and leader["seeds"] >= 2 and runner_up["seeds"] >= 2:
        return WINNER, (f"{leader['opt_label']}: the next, {runner_up['opt_label']}, reached the "
                        f"target from none of its {runner_up['seeds']} seeds")
    if runner_up["reached"] < runner_up["seeds"]:
        return NO_WINNER, (f"{runner_up['opt_label']} reached the target from "
                           f"{runner_up['reached']} of {runner_up['seeds']} seeds: its seeds' "
                           f"times cannot be tested against the leader's")
    from bigtrain.compare.metrics import METRICS_BY_NAME
    from bigtrain.compare.stats import DEFAULT_ALPHA, REGRESSED, MetricSamples, decide
    from bigtrain.compare.thresholds import DEFAULT_THRESHOLD_PCT

    metric = METRICS_BY_NAME["time_to_target_s"]
    verdict = decide(MetricSamples(per_repeat=tuple(leader["seed_times_s"])),
                     MetricSamples(per_repeat=tuple(runner_up["seed_times_s"])),
                     higher_is_better=metric.higher_is_better,
                     threshold_pct=DEFAULT_THRESHOLD_PCT, alpha=DEFAULT_ALPHA,
                     gate_without_test=metric.steady)
    how = verdict.explain()
    if verdict.outcome == REGRESSED:
        return WINNER, (f"{leader['opt_label']}: {runner_up['opt_label']} is "
                        f"{verdict.change_pct:+.3g}% slower to the target, beyond the noise "
                        f"({how})")
    return NO_WINNER, (f"{leader['opt_label']} vs {runner_up['opt_label']}: "
                       f"{verdict.change_pct:+.3g}% is inside the noise or the "
                       f"{DEFAULT_THRESHOLD_PCT:g}% threshold ({verdict.outcome}; {how})")


def leaderboard_frames(data: ReportData) -> list[tuple[tuple, pd.DataFrame, tuple[str, str]]]:
    """Per board (BOARD_KEYS values): its ranked searches and its winner verdict."""
    searches = search_frame(data)
    if searches.empty:
        return []
    out = []
    for keys, board in searches.groupby(list(BOARD_KEYS), sort=False, dropna=False):
        ranked = rank(board)
        runner_up = ranked.iloc[1] if len(ranked) > 1 else None
        out.append((keys, ranked, winner_verdict(ranked.iloc[0], runner_up)))
    return out


def _fmt_lr(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:g}"


def leaderboard_table(data: ReportData) -> Table | None:
    """The leaderboard: every board's searches ranked, and each board's verdict in the notes."""
    boards = leaderboard_frames(data)
    if not boards:
        return None
    several_sources = len(data.sources) > 1
    parts, notes = [], []
    for keys, ranked, (outcome, why) in boards:
        where = dict(zip(BOARD_KEYS, keys, strict=True))
        frame = pd.DataFrame({"rank": ranked["rank"]})
        if several_sources:
            frame["source"] = ranked["source"]
        frame["model"] = ranked["model"]
        if where["setting_config"] != "all":
            frame["configuration"] = ranked["setting_config"]
        frame["target"] = ranked["target"]
        frame["optimizer"] = ranked["opt_label"]
        frame["tuned lr"] = [_fmt_lr(v) + (f" ({edge})" if edge else "")
                             for v, edge in zip(ranked["tuned_lr"], ranked["grid_edge"],
                                                strict=True)]
        frame["seeds reached"] = [f"{r}/{n}" for r, n in zip(ranked["reached"], ranked["seeds"],
                                                              strict=True)]
        frame["time to target (s, median)"] = ranked["seconds_median"]
        frame["time (s, min)"] = ranked["seconds_min"]
        frame["time (s, max)"] = ranked["seconds_max"]
        frame["steps to target (median)"] = ranked["steps_median"]
        if ranked["joules_min"].notna().any():
            frame["energy to target (J, median)"] = ranked["joules_median"]
            frame["energy (J, min)"] = ranked["joules_min"]
            frame["energy (J, max)"] = ranked["joules_max"]
        frame["step time (s)"] = ranked["step_s"]
        if ranked["step_vs_ref"].notna().any():
            frame[f"step cost vs {REFERENCE_OPTIMIZER} {RATIO_MARK}"] = ranked["step_vs_ref"]
        if ranked["state_bytes"].notna().any():
            frame["optimizer state (bytes)"] = ranked["state_bytes"]
            if ranked["state_vs_ref"].notna().any():
                frame[f"state vs {REFERENCE_OPTIMIZER} {RATIO_MARK}"] = ranked["state_vs_ref"]
        frame["tuning cost (s)"] = ranked["tuning_cost_s"]
        if ranked["tuning_cost_j"].notna().any():
            frame["tuning cost (J)"] = ranked["tuning_cost_j"]
        frame["trials"] = [_trials_text(row) for _, row in ranked.iterrows()]
        parts.append(frame)
        board = " · ".join(str(where[k]) for k in ("source", "model", "setting_config", "target")
                           if (k != "source" or several_sources)
                           and not (k == "setting_config" and where[k] == "all"))
        notes.append(f"{board}: {'winner ' if outcome == WINNER else 'no winner named: '}{why}.")
    notes.append("Each optimizer at the lr its own search chose (trials from the spec's seed), "
                 "trained again from fresh seeds; a seed that did not reach the target counts as "
                 "never, so the median is blank unless most seeds reached it; min and max are over "
                 "the seeds that did. The tuning cost is every trial's training plus evaluation. "
                 "An lr marked highest or lowest tried is at the end of its search's grid: the "
                 "best lr may lie beyond it (more --tune-lr trials would tell).")
    return Table(
        "leaderboard",
        "Leaderboard: tuned time to target",
        "Optimizers ranked by median time to target at their tuned learning rate, with the seed "
        "spread, the step cost and state memory against AdamW, and what the tuning cost; a "
        "winner is named only beyond the noise.",
        pd.concat(parts, ignore_index=True),
        notes=tuple(notes),
    )


def _trials_text(row: pd.Series) -> str:
    run, planned = row["tune_trials"], row["tune_trials_planned"]
    text = (f"{run:g} of {planned:g}" if math.isfinite(run) and math.isfinite(planned)
            else "?")
    if row.get("tune_stop") == "budget":
        text += f" (budget {row['tune_budget_s']:g} s spent)"
    return text


def trials_table(data: ReportData) -> Table | None:
    """Every trial of every lr search: its lr, outcome, steps and seconds to target, cost."""
    frame = data.frame
    if frame.empty or "tune_role" not in frame:
        return None
    trials = frame[frame["tune_role"] == ROLE_TRIAL]
    if trials.empty:
        return None
    trials = trials.sort_values(["source", "model", "opt_label", "tune_group",
                                 "tune_trial_index"], kind="stable")
    shown = pd.DataFrame({
        "model": trials["model"], "optimizer": trials["opt_label"],
        "trial": _whole(trials["tune_trial_index"]), "lr": trials["lr_used"],
        "seed": _whole(trials["seed"]), "status": trials["status"],
        "steps to target": _whole(trials["steps_to_target"]),
        "time to target (s)": trials["time_to_target_s"], "best value": trials["best_value"],
        "training + evaluation (s)": _trial_cost_s(trials),
        "reason": trials["reason"],
    })
    if len(data.sources) > 1:
        shown.insert(0, "source", trials["source"])
    return Table(
        "tuning_trials",
        "Learning-rate trials",
        "Every trial of every lr search (one seed each), in the order it ran; the leaderboard "
        "shows the lr each search chose, trained again from fresh seeds.",
        shown.reset_index(drop=True),
    )


def _whole(column: pd.Series) -> pd.Series:
    """Counts as whole numbers (a column with nulls reads as floats otherwise)."""
    return pd.to_numeric(column, errors="coerce").round().astype("Int64")


def _trial_cost_s(trials: pd.DataFrame) -> pd.Series:
    window = pd.to_numeric(trials.get("window_s"), errors="coerce")
    evaluation = pd.to_numeric(trials.get("eval_time_s"), errors="coerce").fillna(0.0)
    return window + evaluation


def leaderboard_tables(data: ReportData) -> list[Table]:
    """The leaderboard and the trials behind it; none for a report without tuned runs."""
    return [t for t in (leaderboard_table(data), trials_table(data)) if t is not None]


def headline_lines(data: ReportData) -> Sequence[str]:
    """One line per board: the winner, or that none is named and why."""
    lines = []
    for keys, _, (outcome, why) in leaderboard_frames(data):
        where = " · ".join(str(k) for k in keys if str(k) != "all")
        lines.append(f"Tuned leaderboard, {where}: "
                     f"{'winner ' if outcome == WINNER else 'no winner named: '}{why}.")
    return lines
