"""`bigbench env`: this machine's fingerprint, as recorded in every run's manifest."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON for machines")
def env(as_json: bool) -> None:
    """Print GPUs, driver, CUDA, cuDNN, torch, Python, CPU, RAM, host and git state."""
    from bigtrain.measure.envinfo import collect_environment
    from bigtrain.common.terminal_text import inert

    info = collect_environment()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        if key == "gpus":
            for gpu in value:
                click.echo(inert(f"gpu[{gpu.get('index')}]: {gpu.get('name')} "
                                 f"uuid={gpu.get('uuid')} memory={gpu.get('memory_total_bytes')} B "
                                 f"power_limit={gpu.get('power_limit_w')} W"))
            continue
        # Host, CPU and driver names are whatever the machine says: control codes made visible.
        click.echo(inert(f"{key}: {value}"))


COMMANDS = [env]
