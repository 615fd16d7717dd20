"""Issue 12 item 9: an unwritable calibration cache is refused before measuring (exit 2, naming
the folder and how to choose another), and showing the stored calibration never measures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from bigtrain.cli import main
from bigtrain.common.errors import BadInput
from bigtrain.measure import calibration as cal

MEASURE_CPU = ["calibrate", "--device", "cpu", "--sizes", "64", "--repeats", "1"]


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BIGTRAIN_CALIBRATION_DIR", str(tmp_path / "calibration"))
    return tmp_path / "calibration"


def _assert_refused_before_measuring(result, folder: Path) -> None:  # noqa: ANN001
    assert result.exit_code == 2, result.output
    assert f"cannot store calibrations in {folder}" in result.output
    assert "BIGTRAIN_CALIBRATION_DIR" in result.output  # how to choose another folder
    assert "matmul" not in result.output and "calibrating" not in result.output  # nothing measured
    assert not isinstance(result.exception, OSError)


def test_a_cache_that_cannot_be_a_folder_is_refused_before_measuring(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ~/.cache is a file here: mkdir fails for any user, root included.
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    monkeypatch.delenv("BIGTRAIN_CALIBRATION_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    result = CliRunner().invoke(main, MEASURE_CPU)
    _assert_refused_before_measuring(result, blocker / "bigtrain" / "calibration")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_cache_is_refused_before_measuring(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    (cache / "bigtrain" / "calibration").mkdir(parents=True)
    (cache / "bigtrain" / "calibration").chmod(0o555)
    monkeypatch.delenv("BIGTRAIN_CALIBRATION_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    try:
        result = CliRunner().invoke(main, MEASURE_CPU)
    finally:
        (cache / "bigtrain" / "calibration").chmod(0o755)
    _assert_refused_before_measuring(result, cache / "bigtrain" / "calibration")


def test_save_failure_is_bad_input_naming_the_folder(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    result = cal.calibrate("cpu", sizes=(64,), repeats=1, warmup=0, copy_bytes=1 << 20,
                           precisions=("fp32",))
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("BIGTRAIN_CALIBRATION_DIR", str(blocker / "calibration"))
    with pytest.raises(BadInput, match=r"cannot store calibrations in .*file.calibration: "):
        cal.save_calibration(result)


def test_show_prints_the_stored_calibration_without_measuring_or_writing(cache_dir: Path) -> None:
    runner = CliRunner()
    measured = runner.invoke(main, [*MEASURE_CPU, "--json"])
    assert measured.exit_code == 0, measured.output
    stored = json.loads(measured.output)
    path = Path(stored["path"])
    before = path.stat().st_mtime_ns, path.read_text()

    shown = runner.invoke(main, ["calibrate", "--device", "cpu", "--show", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output) == stored  # the very same calibration: nothing re-measured
    assert (path.stat().st_mtime_ns, path.read_text()) == before  # and nothing overwritten
    assert sorted(p.name for p in cache_dir.iterdir()) == [path.name]

    text = runner.invoke(main, ["calibrate", "--device", "cpu", "--show"])
    assert text.exit_code == 0, text.output
    assert "matmul  fp32" in text.output and f"stored in {path}" in text.output
    assert "calibrating" not in text.output


def test_show_without_a_stored_calibration_says_how_to_make_one(cache_dir: Path) -> None:
    result = CliRunner().invoke(main, ["calibrate", "--device", "cpu", "--show"])
    assert result.exit_code == 2, result.output
    assert "no stored calibration for cpu" in result.output
    assert "bigbench calibrate --device cpu" in result.output
    assert not cache_dir.exists()  # looking wrote nothing


def test_show_refuses_measurement_flags(cache_dir: Path) -> None:
    result = CliRunner().invoke(main, ["calibrate", "--device", "cpu", "--show", "--sizes", "64"])
    assert result.exit_code == 2
    assert "--sizes: --show prints the stored calibration and measures nothing" in result.output
