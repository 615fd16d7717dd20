"""Every `bigbench ...` command line shown in a code block of the README or the docs site still runs.

The rule, per command line found (`bigbench`, `.venv/bin/bigbench`, `python -m bigtrain[.cli]`,
after `$ `, `VAR=value` prefixes or `&&`):

- a *synopsis* (a line with `[optional]` parts or `a|b` alternatives) is not a command: each of
  its flags must be an option of the real subcommand, and each `a|b` list after a Choice option
  (or in place of a Choice argument) must name only valid choices;
- every other line is parsed by the real Click command (`bigtrain.cli.main`, `make_context` on the
  resolved subcommand), so an unknown subcommand, flag or choice, or a bad number, fails;
- `sweep`, `converge`, `fit` and `profile` lines are then really run with `--dry-run` (the
  matrix is expanded from the real presets, models and optimizers: a misspelt axis value fails),
  except with `--resume`, which needs an existing run folder, and except lines naming `tv:`/`hf:`
  models where their library is not installed (parsed only);
- `ab` lines also build their sweep spec (what `ab` does before it runs anything), and `ab` and
  `compare` lines parse their `--threshold`;
- commands that read an existing run folder (`report`, `compare`, `export`, a `--resume`) and
  those that measure (`calibrate`, `env`, `list`) are parsed only.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from conftest import REPO

#: Where commands are shown: the front door and every page of the site (drafts included).
DOC_FILES = (REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")))

_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SYNOPSIS_MARK = re.compile(r"[\[\]|]|(?<!\S)\.\.\.?(?!\S)")
_FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
_ALTERNATIVES = re.compile(r"(?<![\w-])(?:(--?[A-Za-z][\w-]*)[ =])?\[?([\w:.-]+(?:\|[\w:.-]+)+)\]?")
_OPERATORS = {"&&", "||", ";", "|"}
_DRY_RUN_COMMANDS = ("sweep", "converge", "fit", "profile")
_READS_A_RUN = ("report", "compare", "export")


@dataclass(frozen=True)
class DocCommand:
    """One command line as shown in a doc: where, the text, and its arguments after `bigbench`."""

    where: str
    text: str
    synopsis: bool
    argv: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


def _code_blocks(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of every fenced code block."""
    blocks: list[tuple[int, list[str]]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        if fence is None and stripped.startswith(("```", "~~~")):
            fence, body, start = stripped[:3], [], number + 1
        elif fence is not None and stripped.startswith(fence):
            blocks.append((start, body))
            fence = None
        elif fence is not None:
            body.append(line)
    return blocks


def _logical_lines(start: int, lines: list[str]) -> list[tuple[int, str]]:
    """Join backslash continuations, and a synopsis's indented `[...]`/`--` continuation lines."""
    joined: list[tuple[int, str]] = []
    for offset, line in enumerate(lines):
        continues_synopsis = (joined and line[:1].isspace() and line.lstrip()[:1] in ("[", "-")
                              and _SYNOPSIS_MARK.search(joined[-1][1]))
        if joined and (joined[-1][1].endswith("\\") or continues_synopsis):
            number, previous = joined[-1]
            joined[-1] = (number, previous.rstrip("\\").rstrip() + " " + line.strip())
        else:
            joined.append((start + offset, line.strip()))
    return joined


def _command_start(tokens: list[str]) -> int | None:
    """Index of the first argument after the bigbench command word, or None if not bigbench."""
    if tokens and (tokens[0] == "bigbench" or tokens[0].endswith("/bigbench")):
        return 1
    if (len(tokens) >= 3 and Path(tokens[0]).name.startswith("python") and tokens[1] == "-m"
            and tokens[2] in ("bigtrain", "bigtrain.cli")):
        return 3
    return None


def _strip_comment(line: str) -> str:
    return re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()


def commands_in(text: str, source: str) -> list[DocCommand]:
    """Every bigbench command line in the code blocks of one Markdown text."""
    found: list[DocCommand] = []
    for start, lines in _code_blocks(text):
        for number, line in _logical_lines(start, lines):
            line = line.removeprefix("$ ")
            where = f"{source}:{number}"
            if _SYNOPSIS_MARK.search(_strip_comment(line)):
                words = _strip_comment(line).split()
                while words and _ENV_ASSIGNMENT.match(words[0]):
                    words = words[1:]
                if _command_start(words) is not None:
                    found.append(DocCommand(where=where, text=_strip_comment(line), synopsis=True))
                continue
            try:
                tokens = shlex.split(line, comments=True)
            except ValueError as exc:  # an unbalanced quote: a broken command as shown
                if re.search(r"(?:^|\s|/)bigbench\s", line):
                    found.append(DocCommand(where=where, text=line, synopsis=False,
                                            argv=("<unparseable: " + str(exc) + ">",)))
                continue
            segment: list[str] = []
            for token in [*tokens, ";"]:
                if token not in _OPERATORS:
                    segment.append(token)
                    continue
                env = []
                while segment and _ENV_ASSIGNMENT.match(segment[0]):
                    name, _, value = segment.pop(0).partition("=")
                    env.append((name, value))
                first = _command_start(segment)
                if first is not None:
                    found.append(DocCommand(where=where, text=line, synopsis=False,
                                            argv=tuple(segment[first:]), env=tuple(env)))
                segment = []
    return found


def documented_commands() -> list[DocCommand]:
    found: list[DocCommand] = []
    for path in DOC_FILES:
        found.extend(commands_in(path.read_text(), str(path.relative_to(REPO))))
    return found


# -- checking one command --------------------------------------------------------------------
def _main() -> click.Group:
    from bigtrain.cli import main

    return main


def _resolve(name: str, where: str) -> click.Command:
    command = _main().commands.get(name)
    if command is None:
        raise AssertionError(f"{where}: no such command `bigbench {name}`; "
                             f"commands: {', '.join(sorted(_main().commands))}")
    return command


def _option_names(command: click.Command) -> dict[str, click.Parameter]:
    names: dict[str, click.Parameter] = {"--help": None, "-h": None}  # type: ignore[dict-item]
    for param in command.params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                names[name] = param
    return names


def check_synopsis(doc: DocCommand) -> str:
    """Each flag of a synopsis line is a real option; each `a|b` list names real choices."""
    words = doc.text.split()
    while words and _ENV_ASSIGNMENT.match(words[0]):
        words = words[1:]
    first = _command_start(words)
    name = words[first].strip("[]") if first is not None and len(words) > first else ""
    command = _resolve(name, doc.where)
    options = _option_names(command)
    rest = doc.text.split(name, 1)[1]
    for flag in _FLAG.findall(rest):
        if flag not in options:
            raise AssertionError(f"{doc.where}: `bigbench {name}` has no option {flag}; "
                                 f"its options: {', '.join(sorted(options))}\n  {doc.text}")
    choice_arguments = [p for p in command.params
                        if isinstance(p, click.Argument) and isinstance(p.type, click.Choice)]
    for flag, alternatives in _ALTERNATIVES.findall(rest):
        param = options.get(flag) if flag else (choice_arguments[0] if choice_arguments else None)
        if param is None or not isinstance(param.type, click.Choice):
            continue
        for value in alternatives.split("|"):
            if value not in param.type.choices:
                raise AssertionError(
                    f"{doc.where}: {flag or param.name} has no choice {value!r}; choices: "
                    f"{', '.join(map(str, param.type.choices))}\n  {doc.text}")
    return "synopsis checked"


def _parse(doc: DocCommand) -> tuple[str, click.Command, click.Context]:
    main = _main()
    parent = click.Context(main, info_name="bigbench")
    if not doc.argv:
        raise AssertionError(f"{doc.where}: `bigbench` without a subcommand\n  {doc.text}")
    try:
        name, command, rest = main.resolve_command(parent, list(doc.argv))
        return name, command, command.make_context(name, rest, parent=parent)
    except click.exceptions.Exit:  # --help or --version: parsed fine
        return doc.argv[0], main.commands[doc.argv[0]], parent
    except click.ClickException as exc:
        raise AssertionError(f"{doc.where}: {exc.format_message()}\n  {doc.text}") from None


def _needs_missing_library(argv: tuple[str, ...]) -> bool:
    text = " ".join(argv)
    return (("tv:" in text and importlib.util.find_spec("torchvision") is None)
            or ("hf:" in text and importlib.util.find_spec("transformers") is None))


def _dry_run(doc: DocCommand) -> None:
    argv = list(doc.argv)
    if "--dry-run" not in argv:
        argv.append("--dry-run")
    result = CliRunner().invoke(_main(), argv, env=dict(doc.env))
    if result.exit_code != 0:
        raise AssertionError(f"{doc.where}: `bigbench {' '.join(argv)}` exited "
                             f"{result.exit_code}:\n{result.output[-2000:]}")


def _build_spec(doc: DocCommand, ctx: click.Context) -> None:
    from bigtrain.cells.axes import AXIS_TABLE
    from bigtrain.common.errors import BadInput
    from bigtrain.cells.spec import spec_from_preset

    params = ctx.params
    overrides = {axis.name: params[axis.name] for axis in AXIS_TABLE if axis.name in params}
    overrides.update({"warmup_s": params.get("warmup"), "duration_s": params.get("duration"),
                      "min_steps": params.get("min_steps"),
                      "cell_timeout_s": params.get("cell_timeout")})
    try:
        spec_from_preset(params["preset"], overrides)
    except BadInput as exc:
        raise AssertionError(f"{doc.where}: {exc}\n  {doc.text}") from None


def _check_thresholds(doc: DocCommand, ctx: click.Context) -> None:
    from bigtrain.compare import parse_thresholds
    from bigtrain.common.errors import BadInput

    spec = ctx.params.get("threshold_spec")
    if spec is not None:
        try:
            parse_thresholds(spec)
        except BadInput as exc:
            raise AssertionError(f"{doc.where}: {exc}\n  {doc.text}") from None


def check_command(doc: DocCommand) -> str:
    """Check one documented command by the rule in this module's docstring; say what was done."""
    if doc.synopsis:
        return check_synopsis(doc)
    name, _command, ctx = _parse(doc)
    if name in ("ab", "compare"):
        _check_thresholds(doc, ctx)
    if name == "ab":
        _build_spec(doc, ctx)
        return "parsed, spec built"
    if name in _DRY_RUN_COMMANDS:
        if "--resume" in doc.argv:
            return "parsed only (--resume needs an existing run folder)"
        if _needs_missing_library(doc.argv):
            return "parsed only (the models extra is not installed)"
        _dry_run(doc)
        return "dry-run"
    if name in _READS_A_RUN:
        return "parsed only (reads an existing run folder)"
    return "parsed only"


# -- the tests -------------------------------------------------------------------------------
COMMANDS = documented_commands()


def test_the_docs_show_commands_from_the_readme_and_the_site() -> None:
    sources = {doc.where.split(":")[0] for doc in COMMANDS}
    assert "README.md" in sources
    assert sum(1 for s in sources if s.startswith("docs/")) >= 10
    assert len(COMMANDS) >= 60  # the extraction did not silently stop finding them
    assert any(doc.synopsis for doc in COMMANDS) and any(not doc.synopsis for doc in COMMANDS)


@pytest.mark.parametrize("doc", COMMANDS, ids=[doc.where for doc in COMMANDS])
def test_every_documented_command_runs(doc: DocCommand, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # preset paths such as bench/presets/gpu.toml are the checkout's
    check_command(doc)


# -- the checker itself: it fails where a reader would ----------------------------------------
def _one(markdown_line: str) -> DocCommand:
    (doc,) = commands_in(f"```\n{markdown_line}\n```\n", "example.md")
    return doc


def test_extraction_reads_prompts_env_prefixes_chains_continuations_and_comments() -> None:
    text = ("text `bigbench sweep --not-in-a-block`\n```\n"
            "$ bigbench env --json\n"
            "OMP_NUM_THREADS=1 bigbench converge --preset converge-quick   # a comment\n"
            "bash setup.sh && .venv/bin/bigbench sweep\n"
            "bigbench sweep --model mlp:seed \\\n    --optimizer sgd\n"
            "bigbench ab [sweep flags] [--rounds N]\n            [--mode interleave|duet]\n"
            "python3 -m bigtrain.cli list models\n"
            "pytest bench/ --benchmark-only\n```\n")
    found = commands_in(text, "x.md")
    assert [(d.where, d.argv, d.env, d.synopsis) for d in found] == [
        ("x.md:3", ("env", "--json"), (), False),
        ("x.md:4", ("converge", "--preset", "converge-quick"), (("OMP_NUM_THREADS", "1"),), False),
        ("x.md:5", ("sweep",), (), False),
        ("x.md:6", ("sweep", "--model", "mlp:seed", "--optimizer", "sgd"), (), False),
        ("x.md:8", (), (), True),
        ("x.md:10", ("list", "models"), (), False),
    ]
    assert found[4].text == "bigbench ab [sweep flags] [--rounds N] [--mode interleave|duet]"


def test_a_misspelt_flag_fails() -> None:
    with pytest.raises(AssertionError, match=r"example.md:2: No such option '--optimzer'"):
        check_command(_one("bigbench sweep --optimzer sgd --dry-run"))


def test_a_misspelt_choice_or_subcommand_fails() -> None:
    with pytest.raises(AssertionError, match=r"'parqet' is not one of"):
        check_command(_one("bigbench export results/RUN --format parqet -o x.parquet"))
    with pytest.raises(AssertionError, match=r"No such command 'sweeep'"):
        check_command(_one("bigbench sweeep"))


def test_a_synopsis_with_a_misspelt_flag_or_choice_fails() -> None:
    assert check_command(_one("bigbench ab [--rounds N] [--mode interleave|duet]")) \
        == "synopsis checked"
    with pytest.raises(AssertionError, match=r"has no option --round\b"):
        check_command(_one("bigbench ab [--round N]"))
    with pytest.raises(AssertionError, match=r"--mode has no choice 'dut'"):
        check_command(_one("bigbench ab [--mode interleave|dut]"))
    with pytest.raises(AssertionError, match=r"--format has no choice 'parqet'"):
        check_command(_one("bigbench export RUN --format csv|parqet"))


def test_a_bad_axis_value_fails_the_dry_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    with pytest.raises(AssertionError, match=r"exited 2:[\s\S]*sgdd"):
        check_command(_one("bigbench sweep --preset ci --optimizer sgdd"))


def test_ab_builds_its_spec_and_compare_parses_its_threshold(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    with pytest.raises(AssertionError, match=r"sgdd"):
        check_command(_one("bigbench ab --preset ci --optimizer sgdd"))
    with pytest.raises(AssertionError, match=r"step_tme"):
        check_command(_one("bigbench compare results/A results/B --threshold step_tme=5%"))


def test_which_commands_are_parsed_only() -> None:
    assert check_command(_one("bigbench sweep --resume 20261128-141500-box")).startswith(
        "parsed only (--resume")
    assert check_command(_one("bigbench report results/RUN -o DIR")).startswith(
        "parsed only (reads")
