"""The report opened in a real browser: headless Chromium loads index.html from disk, every image
must decode (naturalWidth > 0) and nothing may be logged to the console as an error.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON messages
ended by NUL on file descriptors 3 and 4), which needs no websocket library and reports console
messages with their level, resource failures included. A negative test proves the check catches a
broken image and a console.error. Skipped only when no chromium binary is installed.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from bigtrain.report import write_report

from report_machines import write_machines
from test_report import fixture_runs

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-pipe", "--hide-scrollbars",
)
#: Where the screenshot of the fixture report is kept for a person to look at.
SCREENSHOT_DIR = Path(os.environ.get("BIGTRAIN_SCREENSHOT_DIR", tempfile.gettempdir()))


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class PipeBrowser:
    """A headless Chromium and a DevTools-protocol session on its pipe."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds() -> None:  # runs in the child: the protocol expects fds 3 (in) and 4 (out)
            # Copy both first: either pipe end may itself sit on fd 3 or 4.
            reader, writer = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(reader, 3)
            os.dup2(writer, 4)

        self.process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            # fds 3 and 4 are kept open in the child (close_fds runs after preexec_fn).
            preexec_fn=wire_fds, pass_fds=(3, 4),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout_s: float = 30.0) -> dict[str, Any]:
        """Send one command and wait for its answer, keeping every event that arrives meanwhile."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """Wait for an event by name (or return it if it already came)."""
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + timeout_s
        while True:
            event = self._read(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout_s=5)
        except Exception:  # noqa: BLE001 - closing a browser that is already gone is fine
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


def open_page(page: Path, screenshot: Path, tmp_path: Path) -> dict[str, Any]:
    """Load a local page; return its images' load state and the console errors; save a screenshot."""
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no chromium installed (setup.sh --test installs Debian's chromium)")
    browser = PipeBrowser(binary, tmp_path / "chromium-profile")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send(
            "Target.attachToTarget", {"targetId": target, "flatten": True}
        )["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                     session=session)
        browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired")
        images = browser.send("Runtime.evaluate", {
            "expression": "JSON.stringify([...document.images].map(i => ({src: i.src.slice(0, 40),"
                          " complete: i.complete, naturalWidth: i.naturalWidth})))",
            "returnByValue": True,
        }, session=session)["result"]["value"]
        widths = browser.send("Runtime.evaluate", {
            "expression": "JSON.stringify({scroll: document.documentElement.scrollWidth,"
                          " client: document.documentElement.clientWidth,"
                          " body: document.body.scrollWidth,"
                          " tables: [...document.querySelectorAll('table')].map(t => {"
                          "   const box = t.parentElement.getBoundingClientRect();"
                          "   return {right: box.right, overflow: getComputedStyle(t.parentElement)"
                          "   .overflowX}; })})",
            "returnByValue": True,
        }, session=session)["result"]["value"]
        metrics = browser.send("Page.getLayoutMetrics", session=session)
        height = int(metrics["cssContentSize"]["height"])
        shot = browser.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": 1400, "height": min(height, 16000), "scale": 1},
        }, session=session)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        # Let late console messages arrive before judging.
        browser.send("Runtime.evaluate", {"expression": "1"}, session=session)
        errors = [
            e["params"] for e in browser.events
            if (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
            or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
            or e.get("method") == "Runtime.exceptionThrown"
        ]
        return {"images": json.loads(images), "errors": errors, "height": height,
                "widths": json.loads(widths)}
    finally:
        browser.close()


def test_browser_check_catches_a_broken_image_and_a_console_error(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body><h1>broken on purpose</h1>"
        '<img src="data:image/png;base64,AAAA" alt="bad data">'
        '<img src="missing.png" alt="missing file">'
        "<script>console.error('deliberate console error')</script></body></html>",
        encoding="utf-8",
    )
    result = open_page(page, tmp_path / "broken.png", tmp_path)
    assert [img["naturalWidth"] for img in result["images"]] == [0, 0]
    texts = json.dumps(result["errors"])
    assert "deliberate console error" in texts
    assert "missing.png" in texts or "ERR_FILE_NOT_FOUND" in texts


def test_report_renders_in_chromium_with_every_image_loaded(tmp_path: Path) -> None:
    runs = fixture_runs()
    index = write_report(runs, tmp_path / "report", baseline=runs[0])
    screenshot = SCREENSHOT_DIR / "bigtrain-report-screenshot.png"
    result = open_page(index, screenshot, tmp_path)
    assert result["images"], "the report has no figures"
    broken = [img for img in result["images"] if not img["complete"] or img["naturalWidth"] == 0]
    assert broken == []
    assert result["errors"] == []
    assert screenshot.stat().st_size > 10_000
    assert result["height"] > 2000, "the page is suspiciously short"


def test_three_machine_report_with_sixty_cells_fits_1400_px(tmp_path: Path) -> None:
    """66 cells on each of three machines: no table, figure or line widens the page at 1400 px;
    wide tables wrap their text and scroll inside their own box."""
    runs = write_machines(tmp_path / "runs", count=66)
    index = write_report(runs, tmp_path / "report", baseline=runs[0],
                         prices_usd_per_h={"NVIDIA H200": 3.5, "cpu": 0.1})
    screenshot = SCREENSHOT_DIR / "bigtrain-report-three-machines.png"
    result = open_page(index, screenshot, tmp_path)
    widths = result["widths"]
    assert widths["client"] == 1400
    assert widths["scroll"] <= widths["client"], widths
    assert widths["body"] <= widths["client"], widths
    assert len(widths["tables"]) >= 10
    for table in widths["tables"]:
        assert table["right"] <= widths["client"], table
        assert table["overflow"] == "auto", table
    assert result["errors"] == []
    assert all(img["naturalWidth"] > 0 for img in result["images"])
