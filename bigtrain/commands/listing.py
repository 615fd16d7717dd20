"""`bigbench list`: what can be swept on this machine."""

from __future__ import annotations

import click

TOPICS = ("models", "optimizers", "schedules", "precisions", "devices", "presets", "frameworks")


@click.command(name="list")
@click.argument("topic", type=click.Choice(TOPICS), required=False)
def list_command(topic: str | None) -> None:
    """List models, optimizers, lr schedules, precisions, devices, presets or frameworks (all by
    default; `list frameworks` also asks each installed framework for its devices)."""
    from bigtrain.common.terminal_text import inert

    for name in [topic] if topic else TOPICS:
        click.echo(f"{name}:")
        lines = _frameworks(probe=topic == "frameworks") if name == "frameworks" else _LISTERS[name]()
        for line in lines:
            # Plugins and preset files supply these names and descriptions.
            click.echo(inert(f"  {line}"))


def _models() -> list[str]:
    from bigtrain.workloads import FAMILIES, UNAVAILABLE_FAMILIES

    lines = []
    for family_name, family in FAMILIES:
        for size_name, size in family.sizes.items():
            default = " (default size)" if size_name == family.default_size else ""
            bn = "BN slots" if size.has_batch_norm else "no BN"
            unit = getattr(size, "item_unit", None) or family.item_unit  # a size may say its own
            lines.append(f"{family_name}:{size_name:<12} {size.description}; batch "
                         f"{size.default_batch_size}; {bn}; {unit}{default}")
            if size.hyperparameters():
                lines.append(f"    {size.hyperparameters_text()}")
    for family_name, reason in UNAVAILABLE_FAMILIES:
        lines.append(f"{family_name}:*  unavailable: {reason}")
    return lines


def _optimizers() -> list[str]:
    """One line per optimizer: implementations and where each runs, package (installed or not),
    optimizer-state bytes per parameter byte, then the hyper-parameters a cell may set."""
    import torch

    from bigtrain.training.optim import OPTIMIZERS, spec_impls, unsupported_reason
    from bigtrain.measure.state_probe import PROBE_DESCRIPTION

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    lines = []
    for name, spec in OPTIMIZERS:
        support = []
        for impl in spec_impls(spec):
            where = [d for d in devices if unsupported_reason(spec, impl, d) is None]
            support.append(f"{impl}[{','.join(where) or 'unsupported'}]")
        lines.append(f"{name:<18} {spec.description}")
        lines.append(f"    impls: {' '.join(support)}; package: {_package_status(spec)}; "
                     f"state: {_state_text(spec)}")
        if keys := _hyperparameter_keys(spec):
            lines.append(f"    hyper-parameters ({name}:key=value): {keys}")
    lines.append(f"(state: optimizer-state bytes per parameter byte after a step on {PROBE_DESCRIPTION};"
                 " each cell records its own as optimizer_state_ratio)")
    return lines


def _package_status(spec) -> str:
    from bigtrain.training.optim import optimizer_provenance

    package, version = optimizer_provenance(spec)
    if reason := spec.available():
        return f"{package} not installed ({reason.rsplit(': ', 1)[-1]})"
    return f"{package} {version or '(version unknown)'}"


def _state_text(spec) -> str:
    """The probe's state ratio (`2.000x`), or why there is none."""
    from bigtrain.measure.state_probe import cached_state_ratio

    if spec.available():
        return "n/a (not installed)"
    try:
        return f"{cached_state_ratio(spec):.3f}x"
    except Exception as exc:  # noqa: BLE001 - a plugin's optimizer that fails on the probe: say so
        return f"n/a ({type(exc).__name__}: {exc})"


def _hyperparameter_keys(spec) -> str:
    """`lr=0.001 (float), ...`: the keys a cell may set, with the defaults bigbench uses."""
    if spec.available():
        return ""
    shown = []
    for key, kind in spec.hyperparameter_types().items():
        default = spec.hyperparams.get(key)
        shown.append(f"{key} ({kind})" if default is None else f"{key}={default} ({kind})")
    return ", ".join(shown)


def _schedules() -> list[str]:
    from bigtrain.training.schedules import SCHEDULES

    lines = [f"{name:<13} {text}" for name, text in SCHEDULES.items()]
    lines.append("(converge cells only: --schedule; Schedule-Free optimizers run at constant)")
    return lines


def _precisions() -> list[str]:
    from bigtrain.training.precision import PRECISIONS

    return [f"{r.name:<5} {r.description}; devices: {', '.join(r.device_types)}"
            for r in PRECISIONS.values()]


def _devices() -> list[str]:
    import torch

    lines = ["cpu"]
    if torch.cuda.is_available():
        lines.append(f"cuda     (any of the {torch.cuda.device_count()} visible GPUs)")
        for index in range(torch.cuda.device_count()):
            lines.append(f"cuda:{index}   {torch.cuda.get_device_name(index)}")
    else:
        lines.append("(no CUDA device visible: cuda cells are skipped)")
    lines.append("auto     every visible GPU, else the CPU")
    return lines


def _presets() -> list[str]:
    from bigtrain.cells.spec import load_preset, preset_names, presets_dir

    lines = []
    for name in preset_names():
        _, data, _ = load_preset(name)
        lines.append(f"{name:<8} {data.get('description', '')}")
    lines.append(f"(from {presets_dir()})")
    return lines


def _frameworks(probe: bool) -> list[str]:
    """Each value of the framework axis: installed or not (with the install line), its package
    versions and, with `probe`, its backend and devices, asked in a fresh interpreter so that
    this process imports no framework."""
    from bigtrain import frameworks

    lines = []
    for name in frameworks.FRAMEWORKS:
        versions = frameworks.installed_versions(name)
        shown = ", ".join(f"{package} {version}" for package, version in versions.items())
        if reason := frameworks.missing_reason(name):
            lines.append(f"{name:<11} not available: {reason}")
            continue
        lines.append(f"{name:<11} installed: {shown}")
        if not probe:
            continue
        if name == frameworks.TORCH:
            lines.append("    devices: see `bigbench list devices`")
            continue
        info = frameworks.probe_version_info(name)
        if isinstance(info, str):
            lines.append(f"    devices: unknown ({info})")
        else:
            lines.append(f"    backend {info.get('backend', '?')}; devices: "
                         f"{info.get('devices', '?')}")
    if not probe:
        lines.append("(devices: bigbench list frameworks)")
    return lines


_LISTERS = {"models": _models, "optimizers": _optimizers, "schedules": _schedules,
            "precisions": _precisions,
            "devices": _devices, "presets": _presets}

COMMANDS = [list_command]
