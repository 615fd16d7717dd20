"""The learning curves of converge records as one long-form frame: a row per cell x seed x evaluation.

A converge record (`bigbench converge`) keeps its curve as equal-length lists, one value per
held-out evaluation (`CURVE_COLUMNS`: step, wall seconds, train loss, held-out loss and metric).
Tables and figures want them long: one row per evaluation with the cell's axes, seed and target
beside it, which is also the shape people load into their own notebooks (the report writes it as
tables/curves.csv). Analysing side: pandas, never torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from bigtrain.common.errors import BadInput
from bigtrain.results.schema import AXES, CURVE_COLUMNS, CellRecord
from bigtrain.results.store import CELLS_NAME, LoadedRun

#: What identifies a curve's rows, before the curve's own columns.
CURVE_KEYS = ("run_id", "run_path", "cell_id", "repeat", "seed", *AXES, "lr_used", "status",
              "target_metric", "target_value", "target_direction")
#: Every column of `curve_frame`, in order.
CURVE_FRAME_COLUMNS = (*CURVE_KEYS, "evaluation", *CURVE_COLUMNS)


def curve_rows(record: CellRecord, where: str = "a record") -> list[dict[str, Any]]:
    """One row per evaluation of a converge record's curve; none for a record without a curve.

    Raises BadInput naming `where`, the cell and the repeat when the curve lacks a column or its
    columns differ in length (an evaluation's values would be paired with another's).
    """
    curve = record.curve
    if not curve:
        return []
    place = f"{where}: cell {record.cell_id} repeat {record.repeat}"
    missing = [c for c in CURVE_COLUMNS if c not in curve]
    if missing:
        raise BadInput(f"{place}: curve lacks {', '.join(missing)}; a curve holds "
                       f"{', '.join(CURVE_COLUMNS)}")
    lengths = {c: len(curve[c]) for c in CURVE_COLUMNS}
    if len(set(lengths.values())) > 1:
        told = ", ".join(f"{c} {n}" for c, n in lengths.items())
        raise BadInput(f"{place}: curve columns differ in length ({told}); each needs one value "
                       "per evaluation")
    keys: dict[str, Any] = {
        "run_id": record.run_id, "cell_id": record.cell_id, "repeat": record.repeat,
        "seed": record.seed, **record.axes(), "lr_used": record.lr_used, "status": record.status,
        "target_metric": record.target_metric, "target_value": record.target_value,
        "target_direction": record.target_direction,
    }
    return [
        {**keys, "evaluation": i, **{c: float(curve[c][i]) for c in CURVE_COLUMNS}}
        for i in range(lengths["step"])
    ]


def curve_frame(runs: Iterable[LoadedRun]) -> pd.DataFrame:
    """The long-form curves of every converge record of the runs (empty when there are none).

    Rows keep their run_id and run_path, so they join the tidy frame on (run_path, cell_id, repeat).
    """
    rows: list[dict[str, Any]] = []
    for run in runs:
        where = str(run.path / CELLS_NAME)
        for record in run.records:
            for row in curve_rows(record, where):
                row["run_path"] = str(run.path)
                rows.append(row)
    if not rows:
        return pd.DataFrame(columns=list(CURVE_FRAME_COLUMNS))
    return pd.DataFrame(rows, columns=list(CURVE_FRAME_COLUMNS))
