"""The compare package's seams: the gate on records in memory, redefined workloads, metric names
from the definitions, the export-format registry, the one Parquet writer, and the exit codes."""

from __future__ import annotations

import io
import json

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from rich.console import Console

from bigtrain import compare as cmp
from bigtrain.common import exit_codes
from bigtrain.cli import main
from bigtrain.common.errors import BadInput
from bigtrain.compare.exports import EXPORT_FORMATS, FORMATS, TEXT_FORMATS, export_format
from bigtrain.results.schema import CellRecord
from bigtrain.results.store import load_run
from test_compare_support import (
    ENVIRONMENT,
    failed_record,
    ok_record,
    repeated_cell,
    steps,
    write_run,
)


def _versioned(records: list[CellRecord], version: str) -> list[CellRecord]:
    """The records as a writer that knows `workload_version` would store them."""
    return [CellRecord.from_json({**r.to_json(), "workload_version": version}) for r in records]


# -- the gate on records in memory ---------------------------------------------------------------
def test_records_in_memory_are_gated_like_run_folders(tmp_path):
    base = [*repeated_cell("b", "same", 0.010), *repeated_cell("b", "slow", 0.010)]
    cand = [*repeated_cell("c", "same", 0.010, seed=1), *repeated_cell("c", "slow", 0.012, seed=1)]
    in_memory = cmp.compare_records(base, cand, baseline_run="b", candidate_run="c")
    from_folders = cmp.compare_run_dirs(write_run(tmp_path, "b", base),
                                        write_run(tmp_path, "c", cand))
    assert {c.cell_id: c.outcome for c in in_memory.cells} == {"same": "unchanged",
                                                                "slow": "regressed"}
    assert ([(c.cell_id, c.outcome) for c in in_memory.cells]
            == [(c.cell_id, c.outcome) for c in from_folders.cells])
    assert in_memory.gate_failed
    data = cmp.to_json(in_memory)
    assert data["baseline"] == {"run_id": "b", "path": None}
    assert data["candidate"]["path"] is None


def test_records_in_memory_without_a_common_cell_are_refused():
    with pytest.raises(BadInput, match="no cell of candidate matches a cell of baseline"):
        cmp.compare_records(repeated_cell("b", "x", 0.01), repeated_cell("c", "y", 0.01))


# -- redefined workloads -------------------------------------------------------------------------
@pytest.fixture
def redefined_pair():
    """Cell `x` redefined (v1 -> v2, and 20% slower); `y` the same version; `z` unversioned."""
    base = [*_versioned(repeated_cell("b", "x", 0.010), "1"),
            *_versioned(repeated_cell("b", "y", 0.010), "1"),
            *repeated_cell("b", "z", 0.010)]
    cand = [*_versioned(repeated_cell("c", "x", 0.012, seed=1), "2"),
            *_versioned(repeated_cell("c", "y", 0.010, seed=1), "1"),
            *_versioned(repeated_cell("c", "z", 0.010, seed=1), "2")]
    return base, cand


def test_a_redefined_workload_is_compared_and_flagged(redefined_pair):
    """A changed model is what a gate is often asked about: compare it, and never silently."""
    comparison = cmp.compare_records(*redefined_pair)
    cells = {c.cell_id: c for c in comparison.cells}
    assert cells["x"].workload_redefined
    assert cells["x"].outcome == "regressed"  # 20% slower: still caught
    assert cells["x"].redefinition_note == "workload redefined (1 -> 2)"
    assert (cells["x"].baseline_workload_version, cells["x"].candidate_workload_version) == ("1", "2")
    assert cells["y"].outcome == "unchanged" and not cells["y"].workload_redefined  # same version
    assert not cells["z"].workload_redefined  # a version on one side only: nothing to tell apart
    assert [c.cell_id for c in comparison.redefined_cells()] == ["x"]
    assert comparison.counts()["regressed"] == 1 and comparison.gate_failed


def test_a_failure_still_fails_the_gate_when_the_workload_was_redefined():
    base = _versioned(repeated_cell("b", "x", 0.010), "1")
    cand = _versioned([failed_record("c", "x")], "2")
    comparison = cmp.compare_records(base, cand)
    assert comparison.cells[0].outcome == "failed" and comparison.gate_failed


def test_counts_have_no_redefined_verdict():
    comparison = cmp.compare_records(repeated_cell("b", "x", 0.01), repeated_cell("c", "x", 0.01))
    assert "redefined" not in comparison.counts() and comparison.redefined_cells() == []


def test_every_renderer_shows_a_redefined_cell(redefined_pair):
    comparison = cmp.compare_records(*redefined_pair)
    console = Console(file=io.StringIO(), width=250, color_system=None)
    cmp.render_terminal(comparison, console)
    terminal = console.file.getvalue()
    assert "workload redefined (1 -> 2)" in terminal
    assert "1 with a redefined workload, compared all the same" in terminal

    markdown = cmp.render_markdown(comparison)
    open_part = markdown.split("<details>")[0]  # shown in the open, not folded away
    assert "### Workloads redefined (compared all the same)" in open_part
    assert "workload redefined (1 -> 2), regressed" in open_part

    data = json.loads(json.dumps(cmp.to_json(comparison)))
    x = next(c for c in data["cells"] if c["cell_id"] == "x")
    assert x["verdict"] == "regressed" and x["workload_redefined"] is True and x["metrics"]
    assert x["workload_version"] == {"baseline": "1", "candidate": "2"}
    assert data["redefined_cells"] == 1


def test_redefined_is_read_from_run_folders_too(tmp_path, redefined_pair):
    base, cand = redefined_pair
    result = CliRunner().invoke(main, ["compare", str(write_run(tmp_path, "b", base)),
                                       str(write_run(tmp_path, "c", cand))])
    assert result.exit_code == exit_codes.EXIT_REGRESSION, result.output
    assert "1 with a redefined workload" in result.output


# -- metric definitions --------------------------------------------------------------------------
def test_every_metric_says_its_field_direction_unit_and_kind():
    for metric in cmp.METRICS:
        assert metric.record_field and metric.unit and metric.kind in (cmp.NOISY, cmp.STEADY)
    assert {m.name for m in cmp.METRICS if m.steady} == {"peak_mem", "peak_rss", "optimizer_state",
                                                             "activation_mem"}
    assert cmp.metric_names_text(bigger_is_better=True) == "items_per_s"


def test_help_texts_name_every_metric_from_the_definitions():
    compare_help = CliRunner().invoke(main, ["compare", "--help"], terminal_width=1000).output
    export_help = CliRunner().invoke(main, ["export", "--help"], terminal_width=1000).output
    for metric in cmp.METRICS:
        assert metric.name in compare_help
        assert metric.name in export_help
    with pytest.raises(BadInput, match=cmp.metric_names_text()):
        cmp.parse_thresholds("nope=5%")


# -- the export-format registry ------------------------------------------------------------------
def test_export_choices_come_from_the_registry():
    assert FORMATS == tuple(EXPORT_FORMATS) == (
        "github-action-benchmark", "pytest-benchmark", "csv", "parquet")
    assert TEXT_FORMATS == {"github-action-benchmark", "pytest-benchmark", "csv"}
    bad = CliRunner().invoke(main, ["export", "anywhere", "--format", "xml"])
    assert bad.exit_code == exit_codes.EXIT_USAGE
    for name in FORMATS:
        assert name in bad.output
    with pytest.raises(BadInput, match="valid choices: github-action-benchmark"):
        export_format("xml")


# -- one Parquet writer --------------------------------------------------------------------------
def _gpu_like_run(tmp_path):
    """A run whose records carry device memory and telemetry (synthetic numbers, no GPU here)."""
    records = [
        CellRecord.from_json({
            **ok_record("gpu", "x", 0, steps(0.01),
                        telemetry={"energy_j": 3.0, "joules_per_step": 0.1, "valid": True,
                                   "power_mean_w": 250.0, "note": "ok"}).to_json(),
            "peak_mem_allocated_bytes": 2**30,
            "started_at": "2025-01-01T00:01:00+00:00",
        }),
    ]
    env = {**ENVIRONMENT, "gpus": [{"name": "Test GPU", "uuid": "GPU-1"}], "gpu_count": 1}
    return write_run(tmp_path, "gpu", records, environment=env)


def test_two_runs_exported_as_parquet_read_together_with_pyarrow_dataset(tmp_path):
    cpu = write_run(tmp_path, "cpu", [*repeated_cell("cpu", "x", 0.01, repeats=2),
                                      failed_record("cpu", "y")])
    gpu = _gpu_like_run(tmp_path)
    paths = []
    for run in (cpu, gpu):
        out = tmp_path / f"{run.name}.parquet"
        result = CliRunner().invoke(main, ["export", str(run), "--format", "parquet", "-o", str(out)])
        assert result.exit_code == 0, result.output
        paths.append(out)
    schemas = [pq.read_schema(p) for p in paths]
    # the same column has the same type in both files, even where one run holds only nulls
    for name in ("peak_mem_allocated_bytes", "mfu_pct", "calibration_id", "started_at",
                 "run_ended_at", "step_times_s", "repeat"):
        assert schemas[0].field(name).type == schemas[1].field(name).type, name
    assert schemas[0].field("peak_mem_allocated_bytes").type == pa.float64()
    assert schemas[0].field("started_at").type == pa.timestamp("us", tz="UTC")
    assert schemas[0].field("step_times_s").type == pa.list_(pa.float64())

    table = ds.dataset(paths, schema=pa.unify_schemas(schemas)).to_table()
    frame = table.to_pandas()
    assert len(frame) == 4 and set(frame["run_id"]) == {"cpu", "gpu"}
    gpu_row = frame[frame["run_id"] == "gpu"].iloc[0]
    assert gpu_row["peak_mem_allocated_bytes"] == 2**30
    assert gpu_row["telemetry_power_mean_w"] == 250.0
    assert gpu_row["started_at"] == pd.Timestamp("2025-01-01T00:01:00Z")
    assert len(gpu_row["step_times_s"]) == 30


def test_report_and_export_write_parquet_with_the_same_schema(tmp_path):
    from bigtrain.report.render import write_parquet as report_write
    from bigtrain.results.frame import frame_of_runs, run_frame

    run = _gpu_like_run(tmp_path)
    loaded = load_run(run)
    exported = tmp_path / "export.parquet"
    assert CliRunner().invoke(main, ["export", str(run), "--format", "parquet",
                                     "-o", str(exported)]).exit_code == 0
    report_file = tmp_path / "frame.parquet"
    report_write(report_file, frame_of_runs([loaded]))
    assert pq.read_schema(exported) == pq.read_schema(report_file)
    # every known column (the field table's), in its order, then the frame's other columns: the
    # frame's columns all reach the file, and the file's column set does not depend on the run
    from bigtrain.results.parquet import KNOWN_COLUMNS

    known = [c.name for c in KNOWN_COLUMNS]
    columns = list(run_frame(loaded).columns)
    assert pq.read_schema(exported).names == [*known, *(c for c in columns if c not in known)]


def test_parquet_keeps_a_column_mixing_kinds_as_text(tmp_path):
    # a telemetry field that is a number in one record and text in another (the rule the report's
    # writer had, and the export's lacked: it failed on such a column)
    records = [ok_record("m", "x", 0, steps(0.01), telemetry={"clock_mhz_state": 1.5}),
               ok_record("m", "x", 1, steps(0.01), telemetry={"clock_mhz_state": "n/a"})]
    out = tmp_path / "m.parquet"
    result = CliRunner().invoke(main, ["export", str(write_run(tmp_path, "m", records)),
                                       "--format", "parquet", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(out)["telemetry_clock_mhz_state"].tolist() == ["1.5", "n/a"]


# -- exit codes ----------------------------------------------------------------------------------
def test_exit_codes_are_the_contracts():
    assert (exit_codes.EXIT_OK, exit_codes.EXIT_FAILED, exit_codes.EXIT_REGRESSION,
            exit_codes.EXIT_USAGE, exit_codes.EXIT_INTERRUPTED) == (0, 1, 1, 2, 130)
