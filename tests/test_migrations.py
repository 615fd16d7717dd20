"""Older result files are read through the one migration path; newer ones are refused clearly.

SCHEMA_VERSION is still 1, so the machinery is proven with a step to a hypothetical version 2,
registered by the test and applied to the committed version-1 run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bigtrain.cli import main
from bigtrain.common.errors import BadInput
from bigtrain.results import migrations, schema, versions
from bigtrain.results.migrations import upgrade
from bigtrain.results.schema import CellRecord, Manifest, SchemaError
from bigtrain.results.versions import SchemaVersionError
from bigtrain.results.store import CELLS_NAME, MANIFEST_NAME, load_run
from conftest import REPO

COMMITTED_V1_RUN = REPO / "results" / "cpu-2vcpu-quick"


def _v1_to_v2_record(data: dict[str, Any]) -> dict[str, Any]:
    # A hypothetical v2 moved `device_name` into `extra`; v2 readers find it there.
    out = dict(data)
    extra = dict(out.get("extra") or {})
    extra["device_name_v1"] = out.pop("device_name", None)
    out["extra"] = extra
    return out


def _v1_to_v2_manifest(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "environment": {**data["environment"], "upgraded_from": 1}}


@pytest.fixture
def version_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """This bigtrain reads version 2, with a registered step from version 1."""
    monkeypatch.setattr(versions, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(migrations, "STEPS", {})
    migrations.register_step(1, record=_v1_to_v2_record, manifest=_v1_to_v2_manifest)


def test_the_committed_v1_run_reads_at_the_current_version() -> None:
    run = load_run(COMMITTED_V1_RUN)
    assert run.manifest.schema_version == 1 == schema.SCHEMA_VERSION
    assert len(run.records) == 36
    assert {r.schema_version for r in run.history} == {1}


def test_the_committed_v1_run_is_upgraded_on_load_by_a_registered_step(version_2: None) -> None:
    plain_lines = [json.loads(line) for line in
                   (COMMITTED_V1_RUN / CELLS_NAME).read_text().splitlines() if line.strip()]
    run = load_run(COMMITTED_V1_RUN)
    assert run.manifest.schema_version == 2
    assert run.manifest.environment["upgraded_from"] == 1
    assert len(run.history) == len(plain_lines) == 36
    for record, line in zip(run.history, plain_lines, strict=True):
        assert record.schema_version == 2
        assert record.cell_id == line["cell_id"]
        assert record.device_name is None  # moved by the step...
        assert record.extra["device_name_v1"] == line["device_name"]  # ...to where v2 keeps it
        assert record.step_time_s == CellRecord.from_json(line).step_time_s


def test_upgrade_leaves_its_input_alone(version_2: None) -> None:
    line = json.loads((COMMITTED_V1_RUN / CELLS_NAME).read_text().splitlines()[0])
    before = json.dumps(line, sort_keys=True)
    assert upgrade(line, "record")["schema_version"] == 2
    assert json.dumps(line, sort_keys=True) == before


def test_a_version_without_its_step_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(versions, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(migrations, "STEPS", {})
    with pytest.raises(SchemaVersionError, match="schema_version 1 .* no step to upgrade it to 2"):
        upgrade({"schema_version": 1}, "manifest")


def test_a_step_is_registered_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migrations, "STEPS", {})
    migrations.register_step(1)
    with pytest.raises(ValueError, match="already registered"):
        migrations.register_step(1)


@pytest.mark.parametrize(
    ("version", "message"),
    [(None, "record has no integer schema_version"), ("1", "no integer schema_version"),
     (True, "no integer schema_version"), (0, "versions start at 1"),
     (schema.SCHEMA_VERSION + 1, "newer than this bigtrain reads")],
)
def test_the_one_version_check(version: object, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        upgrade({"schema_version": version}, "record")


def _copy_of_v1_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(COMMITTED_V1_RUN, run_dir)
    return run_dir


def test_a_newer_record_names_file_and_line(tmp_path: Path) -> None:
    run_dir = _copy_of_v1_run(tmp_path)
    cells = run_dir / CELLS_NAME
    lines = cells.read_text().splitlines()
    third = json.loads(lines[2])
    third["schema_version"] = schema.SCHEMA_VERSION + 1
    lines[2] = json.dumps(third)
    cells.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInput, match=rf"{CELLS_NAME}:3: record has schema_version "
                                       rf"{schema.SCHEMA_VERSION + 1}, newer than"):
        load_run(run_dir)


def test_a_newer_manifest_is_exit_2_naming_file_and_line(tmp_path: Path) -> None:
    run_dir = _copy_of_v1_run(tmp_path)
    manifest = run_dir / MANIFEST_NAME
    data = json.loads(manifest.read_text())
    data["schema_version"] = schema.SCHEMA_VERSION + 1
    manifest.write_text(json.dumps(data, indent=2))
    result = CliRunner().invoke(main, ["compare", str(run_dir), str(COMMITTED_V1_RUN)])
    assert result.exit_code == 2
    assert f"{manifest}:2: manifest has schema_version {schema.SCHEMA_VERSION + 1}" in result.output
    assert "upgrade bigtrain" in result.output
    assert "Traceback" not in result.output


def test_records_and_manifests_parsed_directly_go_through_the_check() -> None:
    # Executors parse worker payloads with from_json: the same check applies.
    with pytest.raises(SchemaVersionError, match="newer than"):
        Manifest.from_json({"schema_version": schema.SCHEMA_VERSION + 1})
    with pytest.raises(SchemaVersionError, match="newer than"):
        CellRecord.from_json({"schema_version": schema.SCHEMA_VERSION + 1})
