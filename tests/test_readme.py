"""The README's two set-up commands stay true: CI runs exactly the test command it shows."""

from __future__ import annotations

import re

from conftest import REPO


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = text.split("## Set-up: two commands", 1)[1].split("```", 2)[1]
    return [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines() if line.strip()]


def test_readme_has_the_two_setup_commands() -> None:
    commands = _readme_commands()
    assert len(commands) == 2
    assert commands[0].startswith("bash setup.sh") and "bigbench sweep" in commands[0]
    assert commands[1].startswith("bash setup.sh --test") and "pytest" in commands[1]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert _readme_commands()[1] in ci.splitlines()


def test_every_shipped_preset_is_documented() -> None:
    # The presets moved with the reference: the matrix page (step time) and the converge page.
    text = "\n".join((REPO / "docs" / page).read_text()
                     for page in ("sweeps/matrix.md", "converge.md"))
    for preset in (REPO / "bench" / "presets").glob("*.toml"):
        if not preset.stem.startswith("compare-"):
            assert f"`{preset.stem}`" in text
