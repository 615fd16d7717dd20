"""The `bigbench` command line: a Click group of thin commands.

Each command lives in `bigtrain/commands/` and imports its heavy libraries (torch, pandas) inside
the function body, so `bigbench compare` and `bigbench report` never load torch.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import click

from bigtrain import __version__
from bigtrain.common.errors import BadInput
from bigtrain.common.exit_codes import EXIT_BAD_INPUT, EXIT_INTERRUPTED
from bigtrain.common.terminal_text import inert

_PACKAGE_DIR = Path(__file__).resolve().parent


class BadInputExit(click.ClickException):
    """A BadInput raised anywhere below a command, shown as `bigbench: error: ...`, exit 2."""

    exit_code = EXIT_BAD_INPUT

    def show(self, file=None) -> None:  # noqa: ANN001 - click's signature
        # The message carries user data (paths, values): control characters are made visible.
        click.echo(inert(f"bigbench: error: {self.format_message()}"), err=True, file=file)


def _from_bigtrain(category: type[Warning], filename: str) -> bool:
    if category.__module__.split(".")[0] == "bigtrain":
        return True
    try:
        return Path(filename).resolve().is_relative_to(_PACKAGE_DIR)
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _clean_warnings() -> Iterator[None]:
    """Show bigtrain's own warnings as one line, `bigbench: warning: ...`, not Python's default
    `file:line: Category: message` plus a line of bigtrain's source; others as Python shows them."""
    with warnings.catch_warnings():  # restores showwarning afterwards (tests run in-process)
        default_show = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
            if not _from_bigtrain(category, filename):
                default_show(message, category, filename, lineno, file, line)
                return
            click.echo(inert(f"bigbench: warning: {message}"), err=True,
                       file=file if file is not None else sys.stderr)

        warnings.showwarning = show
        yield


class BigbenchGroup(click.Group):
    """Turns our BadInput into exit code 2 with a clean message, and Ctrl-C into 130."""

    def invoke(self, ctx: click.Context):  # noqa: ANN201 - click's signature
        try:
            with _clean_warnings():
                return super().invoke(ctx)
        except BadInput as exc:
            raise BadInputExit(str(exc)) from None
        except click.ClickException as exc:
            # Click's own usage errors quote the bad value: make its control characters visible.
            exc.message = inert(exc.message)
            raise
        except (KeyboardInterrupt, click.Abort):
            # Ctrl-C before a command installed its own handling (e.g. during torch's import).
            click.echo("bigbench: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)


@click.group(cls=BigbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bigbench")
def main() -> None:
    """Benchmark deep-learning optimizers, precisions and hardware; report and gate on the results."""


def _register() -> None:
    from bigtrain.commands import COMMANDS
    from bigtrain.commands.ab import COMMANDS as AB_COMMANDS  # `bigbench ab` and its worker

    for command in [*COMMANDS, *AB_COMMANDS]:
        main.add_command(command)


_register()

if __name__ == "__main__":
    main()
