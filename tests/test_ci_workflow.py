"""bench/ci/github-workflow.yml, the CI recipe users copy (issue 30): GitHub's schema, a workflow
linter (zizmor, from PyPI: no network at test time with --offline), and what the recipe promises:
pinned actions, no event text expanded in scripts, no kept credentials, a guarded self-hosted job,
github-action-benchmark fed by `bigbench export`, and only flags bigbench has."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

yaml = pytest.importorskip("yaml", reason="PyYAML is in the test extra: pip install -e '.[test]'")

WORKFLOW = REPO / "bench" / "ci" / "github-workflow.yml"
SHA_PIN = re.compile(
    r"^\s*(?:-\s*)?uses:\s*([\w.-]+/[\w./-]+)@([0-9a-f]{40})\s+#\s*v\d+(\.\d+)*\s*$")


def _tool(name: str) -> str:
    """The test extra's console script beside this interpreter, else on PATH; skip if absent."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (it is in the test extra: pip install -e '.[test]')")
    return found


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _steps(workflow: dict):
    for job_name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_name, step


def test_every_action_is_pinned_to_a_full_sha_with_its_release_named() -> None:
    lines = [line for line in WORKFLOW.read_text().splitlines()
             if re.match(r"^\s*(-\s*)?uses:", line)]
    assert lines, "no `uses:` found"
    for line in lines:
        assert SHA_PIN.match(line), f"not pinned to a 40-hex SHA with a `# vX.Y` comment: {line}"


def test_no_expression_is_expanded_inside_a_script_and_no_checkout_keeps_credentials() -> None:
    workflow = _workflow()
    for job_name, step in _steps(workflow):
        assert "${{" not in step.get("run", ""), f"{job_name}: {step.get('name')}: an expression"
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False, job_name
    assert workflow["permissions"] == {"contents": "read"}


def test_the_self_hosted_job_warns_and_keeps_forks_off() -> None:
    workflow = _workflow()
    hosted = {name: job for name, job in workflow["jobs"].items()
              if "self-hosted" in job["runs-on"]}
    assert hosted, "the recipe's GPU job is gone"
    text = WORKFLOW.read_text()
    for name, job in hosted.items():
        assert "github.event.pull_request.head.repo.full_name == github.repository" in job["if"]
        before_job = text[:text.index(f"\n  {name}:")]
        assert "WARNING: this job runs the pull request's code on a SELF-HOSTED" in \
            before_job[-1500:], name


def test_github_action_benchmark_reads_what_bigbench_export_writes() -> None:
    workflow = _workflow()
    bench = [(job, step) for job, step in _steps(workflow)
             if step.get("uses", "").startswith("benchmark-action/github-action-benchmark@")]
    assert len(bench) == 1
    job_name, step = bench[0]
    options = step["with"]
    assert options["tool"] == "customSmallerIsBetter"  # export's default direction
    assert options["alert-threshold"] and options["comment-on-alert"] is True
    assert options["auto-push"] is True  # the history chart on gh-pages
    assert workflow["jobs"][job_name]["if"] == "github.event_name == 'push'"  # main's own code
    assert workflow["jobs"][job_name]["permissions"] == {"contents": "write"}
    exports = " ".join(s.get("run", "") for _, s in _steps({"jobs": {job_name:
                                                                     workflow["jobs"][job_name]}}))
    written = re.search(r"--format github-action-benchmark -o \"\$RUNNER_TEMP/([^\"]+)\"", exports)
    assert written, exports
    assert options["output-file-path"] == "${{ runner.temp }}/" + written.group(1)


def _bigbench_commands(workflow: dict) -> list[list[str]]:
    commands = []
    for _, step in _steps(workflow):
        script = step.get("run", "").replace("\\\n", " ")
        for line in script.splitlines() if "\n" in script.strip() else [script]:
            words = shlex.split(line.replace('"$bb"', "bigbench"), comments=True)
            for index, word in enumerate(words):
                if word.endswith("bigbench") and index + 1 < len(words):
                    commands.append(words[index + 1:])
    return commands


def test_every_bigbench_flag_in_the_recipe_exists() -> None:
    from bigtrain.cli import main

    commands = _bigbench_commands(_workflow())
    names = {command[0] for command in commands}
    assert {"ab", "sweep", "export", "report", "env"} <= names, names
    for command in commands:
        known = {opt for p in main.commands[command[0]].params for opt in p.opts}
        for word in command[1:]:
            if word.startswith("--"):
                assert word.split("=")[0] in known, f"bigbench {command[0]} has no {word}"
    ab = next(c for c in commands if c[0] == "ab")
    assert ab[ab.index("--undecided") + 1] == "fail"
    assert any(w.startswith("--require-quiet") for w in ab)


def test_github_accepts_the_workflow() -> None:
    done = subprocess.run([_tool("check-jsonschema"), "--builtin-schema",
                           "vendor.github-workflows", str(WORKFLOW)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _zizmor(path: Path, persona: str) -> list[dict]:
    done = subprocess.run([_tool("zizmor"), "--offline", f"--persona={persona}", "--format",
                           "json", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 10, 11, 12, 13, 14), done.stderr  # 1x: findings
    return json.loads(done.stdout or "[]")


def test_the_linter_finds_nothing_but_the_documented_self_hosted_runner(tmp_path: Path) -> None:
    assert _zizmor(WORKFLOW, "pedantic") == []
    assert [f["ident"] for f in _zizmor(WORKFLOW, "auditor")] == ["self-hosted-runner"]
    # the linter is really reading it: the old recipe's faults come back when reintroduced
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text()
                      .replace("actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683",
                               "actions/checkout@v4")
                      .replace('"origin/$BASE_REF"', '"origin/${{ github.head_ref }}"'))
    found = {f["ident"] for f in _zizmor(broken, "regular")}
    assert {"unpinned-uses", "template-injection"} <= found, found
