"""Machine prices from `--price "NVIDIA H200=3.50,cpu=0.10"` (USD per hour), matched to runs.

A price names a machine by any part of its description: the report's machine name, a GPU name,
the CPU model, the host, or `cpu` / `gpu` for a machine with / without GPUs (case-insensitive,
a substring is enough). Every entry must match at least one run and no run may match two
entries; otherwise BadInput names the entry and the machine names it could match. Prices are
never invented: a run without one gets no price-performance figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from bigtrain.common.errors import BadInput
from bigtrain.results.frame import machine_label
from bigtrain.results.store import LoadedRun


def parse_prices(text: str) -> dict[str, float]:
    """`"NVIDIA H200=3.50,cpu=0.10"` -> {"NVIDIA H200": 3.5, "cpu": 0.1}; BadInput on bad input."""
    prices: dict[str, float] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, sep, value = entry.rpartition("=")
        name = name.strip()
        if not sep or not name:
            raise BadInput(f"--price: entry {entry!r} is not MACHINE=USD_PER_HOUR "
                           "(e.g. \"NVIDIA H200=3.50,cpu=0.10\")")
        try:
            usd_per_h = float(value)
        except ValueError:
            raise BadInput(f"--price: entry {entry!r}: {value.strip()!r} is not a number of US "
                           "dollars per hour") from None
        if not math.isfinite(usd_per_h) or usd_per_h <= 0:
            raise BadInput(f"--price: entry {entry!r}: the price must be a positive number of US "
                           f"dollars per hour, not {value.strip()!r}")
        if name.casefold() in {n.casefold() for n in prices}:
            raise BadInput(f"--price: machine {name!r} is priced twice")
        prices[name] = usd_per_h
    if not prices:
        raise BadInput("--price: no prices given; write MACHINE=USD_PER_HOUR[,MACHINE=USD_PER_HOUR..]")
    return prices


def machine_names(run: LoadedRun) -> tuple[str, ...]:
    """Every name a price may use for the machine of `run`."""
    env = run.manifest.environment or {}
    gpus = env.get("gpus") or []
    names = [machine_label(env), *(str(g.get("name")) for g in gpus if g.get("name")),
             str(env.get("cpu_model") or ""), str(env.get("host") or ""),
             "gpu" if gpus else "cpu"]
    return tuple(dict.fromkeys(n for n in names if n))


def match_prices(prices: Mapping[str, float],
                 sources: Mapping[str, LoadedRun]) -> dict[str, float]:
    """Each source's price in USD per hour, for the sources a price entry names.

    `sources` maps each report source name to its run. BadInput when an entry names no run, or
    a run is named by two entries.
    """
    chosen: dict[str, tuple[str, float]] = {}
    for entry, usd_per_h in prices.items():
        key = entry.casefold()
        matched = [source for source, run in sources.items()
                   if any(key in name.casefold() for name in (source, *machine_names(run)))]
        if not matched:
            known = "; ".join(f"{s} ({', '.join(machine_names(r)[1:])})" for s, r in sources.items())
            raise BadInput(f"--price: {entry!r} matches no machine in these runs; machine names "
                           f"it could match: {known}")
        for source in matched:
            if source in chosen:
                raise BadInput(f"--price: {source} is matched by both {chosen[source][0]!r} and "
                               f"{entry!r}; name the machine more exactly")
            chosen[source] = (entry, usd_per_h)
    return {source: usd for source, (_, usd) in chosen.items()}
