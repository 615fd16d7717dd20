"""The field table: every output is made from it, a field added there reaches every output, and
Parquet folders of real runs (an ok and a failed cell, the committed reference run) read as one
table in DuckDB, polars and pyarrow.dataset."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from bigtrain.compare.metrics import EXPORTED_METRICS, METRICS_BY_NAME
from bigtrain.compare.exports import github_action_benchmark, pytest_benchmark
from bigtrain.results.fields import (
    COMPARE,
    EXPORT,
    FRAME,
    RECORD_FIELDS,
    REPORT,
    Field,
    Gate,
    known_columns,
)
from bigtrain.results.frame import SCALAR_METRICS, run_frame
from bigtrain.results.parquet import COLUMN_TYPES, KNOWN_COLUMNS
from bigtrain.results.schema import RECORD_RULES, CellRecord
from bigtrain.results.store import load_run
from bigtrain.results.validation import integer, number
from conftest import REPO, run_cli, write_preset

REFERENCE_RUN = REPO / "results" / "cpu-2vcpu-quick"


# -- every output is made from the table ---------------------------------------------------------
def test_the_record_and_its_rules_are_the_table_with_the_axes_after_repeat():
    names = [f.name for f in dataclasses.fields(CellRecord)]
    assert [n for n in names if n in {f.name for f in RECORD_FIELDS}] == [f.name for f in RECORD_FIELDS]
    assert list(RECORD_RULES) == names
    for declared in RECORD_FIELDS:
        assert RECORD_RULES[declared.name] is declared.rule


def test_every_compare_metric_report_and_frame_column_comes_from_an_entry():
    gated = {g.name for f in RECORD_FIELDS if COMPARE in f.shows for g in f.gates}
    assert gated == set(METRICS_BY_NAME)
    assert {m.name for m in EXPORTED_METRICS} == {
        g.name for f in RECORD_FIELDS if EXPORT in f.shows for g in f.gates}
    from bigtrain.report.tables import MEMORY_COLUMNS

    assert list(MEMORY_COLUMNS) == [f.name for f in RECORD_FIELDS if REPORT in f.shows]
    frame_names = {c.name for c in known_columns()}
    for declared in RECORD_FIELDS:
        if FRAME in declared.shows and not (declared.columns or declared.prefix):
            assert declared.name in frame_names
            assert COLUMN_TYPES[declared.name] is not None
    assert set(SCALAR_METRICS) <= frame_names


def test_a_bad_entry_names_itself():
    with pytest.raises(ValueError, match="'x_bytes' is in the report's memory table"):
        Field(name="x_bytes", annotation="int | None", rule=integer(), description="x",
              kind="int64", shows=frozenset({FRAME, REPORT}))
    with pytest.raises(ValueError, match="'x_s': a compare metric needs COMPARE and a gate"):
        Field(name="x_s", annotation="float | None", rule=number(), description="x",
              kind="float64", shows=frozenset({FRAME, COMPARE}))
    with pytest.raises(ValueError, match="direction 'down'"):
        Gate(name="x", label="x", direction="down", unit="s")


def test_the_field_table_loads_neither_torch_nor_pandas():
    code = ("import sys, bigtrain.results.fields, bigtrain.results.schema; "
            "print([m for m in ('torch', 'pandas', 'pyarrow', 'pynvml') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         check=True)
    assert out.stdout.strip() == "[]"


# -- a real CPU sweep: an ok optimizer pair and a failing cell ----------------------------------
@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    """mlp:seed with sgd and adam (ok) and the test-only fault:raise (error), on the CPU."""
    folder = tmp_path_factory.mktemp("fields")
    tests = Path(__file__).resolve().parent
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BIGTRAIN_PLUGINS", "fault_workloads")
        patch.setenv("PYTHONPATH", f"{tests}:{REPO}")
        import importlib

        import fault_workloads

        importlib.reload(fault_workloads)
        preset = write_preset(folder, ["mlp:seed", "fault:raise"], ["sgd", "adam"])
        result = run_cli("sweep", "--preset", str(preset), "--out", str(folder), "--run-id", "mix",
                         "--no-report")
    assert result.exit_code == 1, result.output  # the fault cells failed, as they should
    return folder / "mix"


def _by_cell(run: Path) -> dict[tuple[str, str], CellRecord]:
    return {(r.model, r.optimizer): r for r in load_run(run).records}


def test_optimizer_state_bytes_on_a_real_cpu_cell(real_run):
    records = _by_cell(real_run)
    sgd, adam = records[("mlp:seed", "sgd")], records[("mlp:seed", "adam")]
    assert sgd.status == adam.status == "ok"
    param_bytes = 4 * sgd.param_count  # fp32
    assert sgd.optimizer_state_bytes == param_bytes  # one momentum buffer per parameter
    # exp_avg and exp_avg_sq per parameter, plus one fp32 step counter per parameter tensor
    # (mlp:seed is 10 -> 20 -> 1: two weights, two biases)
    assert adam.optimizer_state_bytes == 2 * param_bytes + 4 * 4
    assert records[("fault:raise", "sgd")].optimizer_state_bytes is None


def test_the_new_field_reaches_frame_parquet_compare_exports_and_report(real_run, tmp_path):
    loaded = load_run(real_run)
    frame = run_frame(loaded)
    assert sorted(frame["optimizer_state_bytes"].dropna()) == sorted(
        r.optimizer_state_bytes for r in loaded.records if r.optimizer_state_bytes is not None)
    run_cli("export", str(real_run), "--format", "parquet", "-o", str(tmp_path / "m.parquet"))
    field = pq.read_schema(tmp_path / "m.parquet").field("optimizer_state_bytes")
    assert field.type == pa.int64() and field.metadata[b"unit"] == b"bytes"
    metric = METRICS_BY_NAME["optimizer_state"]
    assert metric.steady and not metric.higher_is_better
    adam = _by_cell(real_run)[("mlp:seed", "adam")]
    assert metric.value(adam) == adam.optimizer_state_bytes
    names = [e["name"] for e in github_action_benchmark(loaded)]
    assert sum(n.endswith(":: optimizer_state") for n in names) == 2
    extras = [b["extra_info"] for b in pytest_benchmark(loaded)["benchmarks"]]
    assert {e["optimizer_state_bytes"] for e in extras} == {
        r.optimizer_state_bytes for r in loaded.records if r.status == "ok"}
    result = run_cli("report", str(real_run), "-o", str(tmp_path / "report"))
    assert result.exit_code == 0, result.output
    memory = [p for p in tmp_path.rglob("memory.csv")]
    assert len(memory) == 1, result.output
    assert "optimizer state (MiB)" in memory[0].read_text().splitlines()[0]


# -- Parquet folders read as one table -----------------------------------------------------------
def _mixed_folder(real_run: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "parquet"
    for name, run in (("a-mix", real_run), ("b-reference", REFERENCE_RUN)):
        result = run_cli("export", str(run), "--format", "parquet",
                         "-o", str(folder / f"{name}.parquet"))
        assert result.exit_code == 0, result.output
    return folder


def test_every_file_has_every_known_column_with_its_type_unit_and_description(real_run, tmp_path):
    folder = _mixed_folder(real_run, tmp_path)
    schemas = [pq.read_schema(p) for p in sorted(folder.glob("*.parquet"))]
    known = [c.name for c in KNOWN_COLUMNS]
    for schema in schemas:
        assert schema.names[:len(known)] == known
        assert schema.remove_metadata().equals(schemas[0].remove_metadata())
    step = schemas[0].field("step_time_median_s")
    assert step.type == pa.float64()
    assert step.metadata == {b"unit": b"s", b"description": b"median of the measured step times"}
    assert schemas[0].field("extra_warmup_settled").type == pa.bool_()


def test_duckdb_polars_and_pyarrow_dataset_read_the_folder_as_one_table(real_run, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    polars = pytest.importorskip("polars")
    folder = _mixed_folder(real_run, tmp_path)
    rows = len(load_run(real_run).records) + len(load_run(REFERENCE_RUN).records)
    glob = str(folder / "*.parquet")

    connection = duckdb.connect()
    count, failed = connection.execute(
        f"select count(*), count(*) filter (where status = 'error') from '{glob}'").fetchone()
    assert (count, failed) == (rows, 2)
    kinds = {row[0]: row[1] for row in
             connection.execute(f"describe select * from '{glob}'").fetchall()}
    assert kinds["extra_warmup_settled"] == "BOOLEAN" and kinds["repeat"] == "BIGINT"

    frame = polars.read_parquet(glob)
    assert frame.height == rows
    assert frame.schema["extra_warmup_settled"] == polars.Boolean
    assert frame.filter(polars.col("status") == "error").height == 2

    # no explicit schema: the dataset takes the first file's, which now holds every column
    for files in (sorted(folder.glob("*.parquet")), sorted(folder.glob("*.parquet"), reverse=True)):
        table = ds.dataset([str(p) for p in files], format="parquet").to_table()
        assert table.num_rows == rows
        assert set(table.column_names) >= {c.name for c in KNOWN_COLUMNS}
        assert table.schema.field("extra_warmup_settled").type == pa.bool_()
        states = table.column("optimizer_state_bytes").to_pylist()
        assert sum(v is not None for v in states) == 2  # the reference run predates the field

    # pandas: file by file with Arrow dtypes, concatenated, a flag column stays a boolean
    import pandas as pd

    joined = pd.concat([pd.read_parquet(p, dtype_backend="pyarrow")
                        for p in sorted(folder.glob("*.parquet"))], ignore_index=True)
    assert len(joined) == rows
    assert str(joined["extra_warmup_settled"].dtype) == "bool[pyarrow]"
