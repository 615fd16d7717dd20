"""Look of the figures: a colour-blind-safe palette, one fixed colour per optimizer, sizes by count.

The optimizer colours come from the Okabe-Ito set (distinguishable with the common colour-vision
deficiencies), assigned in sorted-name order once per report, so an optimizer keeps its colour in
every figure of that report.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

#: Okabe & Ito (2008), yellow last: it is hard to see on white.
OKABE_ITO = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#D55E00",  # vermillion
    "#000000",  # black
    "#F0E442",  # yellow
)
#: Forward, backward, optimizer: a light-to-dark ramp of cividis, readable without colour vision.
PHASE_COLOURS = ("#B8B77A", "#6C6E72", "#00224E")
#: 120 dpi: the smallest text (8 pt legends) is 13 px and tick labels 15 px when the PNG is
#: shown at 100% (90 dpi gave 8-9 px text that needed a zoom to read).
DPI = 120
#: No text in a figure is smaller than this many points (11 px at DPI / 72 px per point).
MIN_FONT_PT = 8.0
#: Most bars (or boxes, or heatmap rows) one figure holds before the report splits it.
MAX_ROWS_PER_FIGURE = 60


def optimizer_palette(labels: Iterable[str]) -> dict[str, str]:
    """A fixed colour per optimizer label; beyond eight, seaborn's colour-blind set continues."""
    ordered = sorted(set(labels))
    colours = list(OKABE_ITO) + list(sns.color_palette("colorblind").as_hex())
    return {label: colours[i % len(colours)] for i, label in enumerate(ordered)}


#: Machine colours (Paul Tol's "muted" set, colour-blind safe), kept apart from the optimizer
#: colours so a machine is never mistaken for an optimizer.
TOL_MUTED = ("#332288", "#117733", "#AA4499", "#882255", "#44AA99", "#999933", "#88CCEE",
             "#DDCC77", "#CC6677")


def machine_palette(sources: Iterable[str]) -> dict[str, str]:
    """A fixed colour per machine (source), in the report's machine order."""
    return {s: TOL_MUTED[i % len(TOL_MUTED)] for i, s in enumerate(dict.fromkeys(sources))}


def apply_theme() -> None:
    """Seaborn's white grid at a size that stays legible when the PNG is shown at 100%."""
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.05)
    plt.rcParams.update({"figure.dpi": DPI, "savefig.dpi": DPI, "axes.titleweight": "bold"})


def wrap(label: str, width: int = 38) -> str:
    """Wrap a long label (a machine name) onto several lines so it does not run into others."""
    return "\n".join(textwrap.wrap(str(label), width=width)) or str(label)


def label_width_in(labels: Iterable[str], font_pt: float = 9.0) -> float:
    """Roughly how wide, in inches, the longest tick label is (for sizing the figure)."""
    longest = max((len(str(x)) for x in labels), default=8)
    return 0.55 * font_pt / 72 * longest + 0.3


def natural_key(label: object) -> list:
    """Sort key that orders numbers inside labels by value: `bs 8` before `bs 16` before `bs 128`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(label))]


def chunk(items: list, size: int) -> list[list]:
    """Split a list into consecutive pieces of at most `size`."""
    size = max(1, size)
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]
