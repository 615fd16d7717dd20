"""The HTML memory timeline of a CUDA memory snapshot, made by torch's own visualiser
(`torch.cuda._memory_viz.trace_plot`).

torch's page imports its viewer script (MemoryViz.js) from a CDN. Where a copy of that script is
found on this machine (a source checkout of torch ships it in `torch/utils/viz/`), it is inlined,
so the page opens offline; otherwise the page is written as torch makes it and the summary notes
that it needs the network to render (the snapshot pickle itself opens in any MemoryViz viewer).
CUDA only: run by the GPU validation script.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

_CDN_IMPORT = re.compile(r'import \{add_local_files\} from "https://[^"]+MemoryViz\.js"')


def viewer_script() -> Path | None:
    """A local MemoryViz.js (torch's viewer) when one exists, else None."""
    import torch

    candidate = Path(torch.__file__).parent / "utils" / "viz" / "MemoryViz.js"
    return candidate if candidate.is_file() else None


def write_memory_timeline(snapshot: Path, target: Path) -> Path | None:
    """Write `target` (HTML) from the snapshot pickle; None when the snapshot holds no trace."""
    from torch.cuda import _memory_viz

    with snapshot.open("rb") as handle:
        data = pickle.load(handle)  # written by this process a moment ago (_dump_snapshot)
    if not data.get("device_traces"):
        return None
    html = _memory_viz.trace_plot(data)
    script = viewer_script()
    if script is not None:
        # The module's export becomes a local binding: the page needs nothing from the network.
        body = script.read_text(encoding="utf-8").replace("export function add_local_files",
                                                          "function add_local_files")
        html = _CDN_IMPORT.sub(lambda _m: body, html)
    target.write_text(html, encoding="utf-8")
    return target


def is_offline(html: str) -> bool:
    """True when the page fetches nothing from the network."""
    return "https://" not in html
