"""The HTML memory timeline of a CUDA memory snapshot, made by torch's own visualiser
(`torch.cuda._memory_viz.trace_plot`).

torch's page imports its viewer script (MemoryViz.js) from a CDN, and the wheel ships no copy.
Where a copy is found on this machine (a source checkout of torch has it in `torch/utils/viz/`), it
is inlined, so torch's own page opens offline. Otherwise `memory_timeline.html` is bigtrain's own
self-contained page (allocated bytes over the profiled steps as an inline SVG, the peak, and the
largest allocations alive at the peak with the code that made them; no script, no network), and
torch's page is written beside it as `memory_timeline.torch.html` for a machine with the network.
The snapshot pickle itself opens in any MemoryViz viewer. CUDA only: run by the GPU script.
"""

from __future__ import annotations

import html as html_text
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
    else:
        target.with_suffix(".torch.html").write_text(html, encoding="utf-8")
        html = offline_timeline_html(data["device_traces"])
    target.write_text(html, encoding="utf-8")
    return target


def allocation_timeline(events: Sequence[Mapping[str, Any]]) -> tuple[
        list[tuple[float, int]], int, float, list[tuple[int, str]]]:
    """From one device's allocator trace: (time µs, allocated bytes) after each alloc/free, the
    peak bytes, its time, and the allocations alive at the peak as (bytes, where), largest first.
    Events as torch's snapshot holds them: action, addr, size, time_us, frames."""
    allocated, peak, peak_time = 0, 0, 0.0
    alive: dict[Any, tuple[int, str]] = {}
    at_peak: list[tuple[int, str]] = []
    points: list[tuple[float, int]] = []
    for event in events:
        action, size = event.get("action"), int(event.get("size") or 0)
        if action == "alloc":
            allocated += size
            alive[event.get("addr")] = (size, _where(event.get("frames") or ()))
        elif action == "free_completed":
            allocated -= size
            alive.pop(event.get("addr"), None)
        else:
            continue
        points.append((float(event.get("time_us") or 0), allocated))
        if allocated > peak:
            peak, peak_time = allocated, float(event.get("time_us") or 0)
            at_peak = sorted(alive.values(), key=lambda a: -a[0])[:10]
    return points, peak, peak_time, at_peak


def _where(frames: Sequence[Mapping[str, Any]]) -> str:
    """The innermost frame outside torch's own files: the code that asked for the memory."""
    for frame in frames:
        name = str(frame.get("filename", ""))
        if "/torch/" not in name:
            return f"{name}:{frame.get('line', '?')} {frame.get('name', '')}"
    return "torch internals" if frames else "no frames recorded"


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def offline_timeline_html(device_traces: Sequence[Sequence[Mapping[str, Any]]]) -> str:
    """A self-contained page (inline SVG, no script, no network) of each device's allocated bytes
    over the profiled window; every string from the snapshot is escaped."""
    sections = []
    for device, events in enumerate(device_traces):
        points, peak, peak_time, at_peak = allocation_timeline(events)
        if not points:
            continue
        t0, t1 = points[0][0], max(points[-1][0], points[0][0] + 1)
        top = max(peak, 1)
        xy = " ".join(f"{20 + 860 * (t - t0) / (t1 - t0):.1f},{280 - 260 * b / top:.1f}"
                      for t, b in points)
        rows = "".join(f"<tr><td>{_mib(size)}</td><td>{html_text.escape(where)}</td></tr>"
                       for size, where in at_peak)
        sections.append(
            f"<h2>cuda:{device}: peak {_mib(peak)} allocated, at "
            f"{(peak_time - t0) / 1e3:.1f} ms of {(t1 - t0) / 1e3:.1f} ms</h2>"
            f'<svg width="900" height="300" role="img" aria-label="allocated bytes over time">'
            f'<line x1="20" y1="280" x2="880" y2="280" stroke="#888"/>'
            f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{xy}"/>'
            f'<text x="22" y="14" font-size="12">{_mib(peak)}</text>'
            f'<text x="22" y="296" font-size="12">0</text></svg>'
            f"<table><tr><th>alive at the peak</th><th>allocated by</th></tr>{rows}</table>")
    body = "".join(sections) or "<p>The snapshot holds no allocations.</p>"
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><title>CUDA memory timeline"
            "</title><style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}"
            f"</style></head><body><h1>CUDA memory over the profiled steps</h1>{body}</body></html>")


def is_offline(html: str) -> bool:
    """True when the page fetches nothing from the network."""
    return "https://" not in html
