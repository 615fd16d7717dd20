"""Shell completion knows the values of --model, --optimizer, --precision, --preset, --device
(issue 30), through Click's own completion protocol (what the sourced bash script runs)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bigtrain.cells.axes import AXIS_TABLE
from bigtrain.cli import main
from bigtrain.commands.completion import list_items
from bigtrain.cells.spec import preset_names
from conftest import REPO


def _complete(args: list[str], incomplete: str) -> list[str]:
    from click.shell_completion import ShellComplete

    completer = ShellComplete(main, {}, "bigbench", "_BIGBENCH_COMPLETE")
    return [item.value for item in completer.get_completions(args, incomplete)]


def _axis(name: str) -> tuple[str, ...]:
    return next(a for a in AXIS_TABLE if a.name == name).choice_list()


@pytest.mark.parametrize("command", ["sweep", "ab", "converge"])
def test_every_named_option_completes_from_its_registry(command: str) -> None:
    assert _complete([command, "--optimizer"], "") == list(_axis("optimizer"))
    starting_ad = [o for o in _axis("optimizer") if o.startswith("ad")]
    assert {"adam", "adamw"} <= set(starting_ad) and "sgd" not in starting_ad
    assert _complete([command, "--optimizer"], "ad") == starting_ad
    assert _complete([command, "--precision"], "") == list(_axis("precision"))
    assert _complete([command, "--device"], "") == ["auto", "cpu", "cuda"]  # no `cuda:N`
    models = _complete([command, "--model"], "mlp:")
    assert "mlp:seed" in models and all(m.startswith("mlp:") for m in models)
    assert _complete([command, "--preset"], "") == preset_names()
    assert _complete([command, "--preset"], "q") == ["quick"]


def test_a_list_completes_its_last_element_and_skips_values_already_given():
    starting_ad = [o for o in _axis("optimizer") if o.startswith("ad")]
    assert _complete(["sweep", "--optimizer"], "sgd,ad") == [f"sgd,{o}" for o in starting_ad]
    def values(items):  # noqa: ANN001, ANN202
        return [item.value for item in items]

    assert values(list_items(["sgd", "adam", "adamw"], "adam,")) == ["adam,sgd", "adam,adamw"]
    assert values(list_items(["default", "N > 0"], "")) == ["default"]  # a placeholder: no value


def test_the_bash_protocol_answers_with_the_values() -> None:
    # What the sourced script does on <Tab>: the env var, COMP_WORDS and COMP_CWORD.
    env = {**os.environ, "_BIGBENCH_COMPLETE": "bash_complete",
           "COMP_WORDS": "bigbench sweep --precision b", "COMP_CWORD": "3",
           "PYTHONPATH": str(REPO)}
    script = "from bigtrain.cli import main; main(prog_name='bigbench')"
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["plain,bf16"], done.stdout  # bash's format: type,value
