"""A sweep over a mixed fleet (a cluster executor's records, naming their node) is reported per
GPU model: each chip is a source of its own, not the driver's machine. Synthetic records."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bigtrain.report.data import load_report_data
from test_compare_support import ok_record, steps, write_run


def _on(record, *, chip: str, node: str, host: str):  # noqa: ANN001, ANN202
    return dataclasses.replace(record, device_name=chip, node_id=node, host=host)


def test_a_mixed_fleet_run_is_reported_per_gpu_model(tmp_path: Path) -> None:
    records = [
        _on(ok_record("fleet", "a", 0, steps(0.010)), chip="NVIDIA H200", node="n1", host="g1"),
        _on(ok_record("fleet", "b", 0, steps(0.010)), chip="NVIDIA H200", node="n2", host="g2"),
        _on(ok_record("fleet", "a", 1, steps(0.020)), chip="NVIDIA A100", node="n3", host="g3"),
    ]
    data = load_report_data([write_run(tmp_path, "fleet", records)])
    by_source = data.frame.groupby("source")["cell_id"].apply(sorted).to_dict()
    assert by_source == {"NVIDIA H200 [fleet]": ["a", "b"], "NVIDIA A100 [fleet]": ["a"]}
    assert sorted(data.frame["host"]) == ["g1", "g2", "g3"]
    assert {"NVIDIA H200 [fleet]", "NVIDIA A100 [fleet]"} <= set(data.sources)


def test_a_local_run_keeps_its_machine_as_the_one_source(tmp_path: Path) -> None:
    data = load_report_data([write_run(tmp_path, "here", [ok_record("here", "a", 0, steps(0.01))])])
    assert set(data.frame["source"]) == {data.sources[0]} and "fleet" not in data.sources[0]
    assert data.frame["node_id"].isna().all()
