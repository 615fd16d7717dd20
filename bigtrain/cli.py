"""The `bigbench` command line: a Click group of thin commands.

Each command lives in `bigtrain/commands/` and imports its heavy libraries (torch, pandas) inside
the function body, so `bigbench compare` and `bigbench report` never load torch.
"""

from __future__ import annotations

import click

from bigtrain import __version__
from bigtrain.errors import BadInput
from bigtrain.exit_codes import EXIT_BAD_INPUT, EXIT_INTERRUPTED


class BadInputExit(click.ClickException):
    """A BadInput raised anywhere below a command, shown as `bigbench: error: ...`, exit 2."""

    exit_code = EXIT_BAD_INPUT

    def show(self, file=None) -> None:  # noqa: ANN001 - click's signature
        click.echo(f"bigbench: error: {self.format_message()}", err=True, file=file)


class BigbenchGroup(click.Group):
    """Turns our BadInput into exit code 2 with a clean message, and Ctrl-C into 130."""

    def invoke(self, ctx: click.Context):  # noqa: ANN201 - click's signature
        try:
            return super().invoke(ctx)
        except BadInput as exc:
            raise BadInputExit(str(exc)) from None
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

    for command in COMMANDS:
        main.add_command(command)


_register()

if __name__ == "__main__":
    main()
