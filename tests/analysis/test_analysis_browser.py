"""The HTML report in headless Chromium: it loads without errors, every figure is shown and the
screenshot is not blank. Two independent drivers: the chromium command line (``--screenshot``
and ``--dump-dom``, reading the state the page's script writes on ``<body>``) and chromedriver
through a minimal WebDriver client (``document.images`` and the browser's console log)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,2000",
]
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (Debian package 'chromium'; `make system-deps`)",
)


def assert_not_blank(png: bytes, shape: tuple[int, int] | None = None) -> None:
    """The screenshot decodes (to ``shape`` if given) and shows more than one flat colour."""
    from matplotlib.image import imread

    img = imread(io.BytesIO(png), format="png")[..., :3]
    assert shape is None or img.shape[:2] == shape, img.shape
    assert min(img.shape[:2]) >= 400, img.shape
    assert float(img.std()) > 0.05, "the screenshot is (nearly) a single colour"
    assert len(np.unique((img[::8, ::8] * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50


def _chromium(args: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{len(list(tmp.iterdir()))}"
    cmd = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@needs_chromium
def test_report_in_headless_chromium(fake_sweep_dir: Path, tmp_path: Path) -> None:
    report = fake_sweep_dir / "report.html"
    figures = report.read_text().count("<figure")
    shot = tmp_path / "shot.png"
    proc = _chromium([f"--screenshot={shot}", report.as_uri()], tmp_path)
    assert shot.is_file(), f"no screenshot; chromium said: {proc.stderr[-2000:]}"
    assert_not_blank(shot.read_bytes(), (2000, 1280))

    proc = _chromium(["--virtual-time-budget=5000", "--dump-dom", report.as_uri()], tmp_path)
    body = re.search(r"<body([^>]*)>", proc.stdout)
    assert body, f"no DOM dumped; chromium said: {proc.stderr[-2000:]}"
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))
    assert attrs.get("status") == "ready", attrs
    assert attrs["errors"] == "0", attrs
    assert int(attrs["images-total"]) == figures >= 5
    assert attrs["images-loaded"] == attrs["images-total"], attrs


class WebDriver:
    """Just enough of the W3C WebDriver protocol, over urllib, to drive chromedriver."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.session = ""

    def call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read() or b"{}").get("value")
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from exc

    def start(self, profile: Path) -> None:
        caps = {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": str(CHROMIUM),
                "args": [*FLAGS, f"--user-data-dir={profile}"],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }
        self.session = self.call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})[
            "sessionId"
        ]

    def s(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        return self.call(method, f"/session/{self.session}{path}", payload)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@needs_chromium
@pytest.mark.skipif(
    CHROMEDRIVER is None, reason="chromedriver is not installed (Debian 'chromium-driver')"
)
def test_report_through_webdriver(fake_sweep_dir: Path, tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [str(CHROMEDRIVER), f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    driver = WebDriver(port)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if driver.call("GET", "/status").get("ready"):
                    break
            except (urllib.error.URLError, ConnectionError, AssertionError):
                pass
            assert time.monotonic() < deadline, "chromedriver did not start"
            time.sleep(0.2)
        driver.start(tmp_path / "profile")
        try:
            driver.s("POST", "/url", {"url": (fake_sweep_dir / "report.html").as_uri()})
            state = driver.s(
                "POST",
                "/execute/async",
                {
                    "script": "var done = arguments[0]; function check() {"
                    " if (document.body.dataset.status !== 'ready') { setTimeout(check, 50); return; }"
                    " var imgs = Array.prototype.slice.call(document.images);"
                    " done({total: imgs.length, figures: document.querySelectorAll('figure').length,"
                    " shown: imgs.filter(function (i) { var r = i.getBoundingClientRect();"
                    " return i.complete && i.naturalWidth > 0 && r.width > 100 && r.height > 100; }).length,"
                    " errors: Number(document.body.dataset.errors), title: document.title}); } check();",
                    "args": [],
                },
            )
            assert state["total"] == state["figures"] == state["shown"] >= 5, state
            assert state["errors"] == 0 and state["title"] == "contrastlab temperature study", state
            logs = driver.s("POST", "/se/log", {"type": "browser"}) or []
            severe = [entry for entry in logs if entry.get("level") == "SEVERE"]
            assert not severe, severe
            assert_not_blank(base64.b64decode(driver.s("GET", "/screenshot")))
        finally:
            driver.s("DELETE", "")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
