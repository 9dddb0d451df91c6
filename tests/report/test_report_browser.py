"""Open report.html in a real headless Chromium (Debian's ``chromium``) and check that it renders, that every
image loads and that the console stays clean.

The browser is driven over the Chrome DevTools protocol on ``--remote-debugging-pipe`` (JSON messages ending
in a NUL byte on file descriptors 3 and 4): no webdriver, no extra Python package, no network port. The test is
skipped when chromium is missing, unless ``HASHGUARD_REQUIRE_BROWSER=1`` (CI), where a missing browser fails.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from hashguard.report import write_report
from hashguard.report.sample import write_sample

pytest.importorskip("matplotlib")

_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--window-size=1280,900",
    "--remote-debugging-pipe",
]
_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")


def _find_chromium() -> str | None:
    """The chromium binary: ``HASHGUARD_CHROMIUM`` when set (and only it), else Debian's or one on PATH."""
    override = os.environ.get("HASHGUARD_CHROMIUM")
    for candidate in (override,) if override else _CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def chromium_or_skip() -> str:
    """The chromium binary; else skip, or fail when ``HASHGUARD_REQUIRE_BROWSER=1``."""
    binary = _find_chromium()
    if binary is None:
        if os.environ.get("HASHGUARD_REQUIRE_BROWSER") == "1":
            pytest.fail("HASHGUARD_REQUIRE_BROWSER=1 but chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    return binary


class DevToolsPipe:
    """A minimal Chrome DevTools protocol client over ``--remote-debugging-pipe``."""

    def __init__(self, binary: str, profile: Path, log: Path, timeout: float = 20.0) -> None:
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        # Move the child's ends above 10 (close-on-exec), so that placing them on 3 and 4 in the child cannot
        # clobber one another; dup2 makes the copies on 3 and 4 inheritable.
        child_in = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_browser_r)
        os.close(from_browser_w)

        def place_pipe_fds() -> None:  # runs in the child between fork and exec
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self._log = open(log, "wb")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [binary, *_FLAGS, f"--user-data-dir={profile}"],
            preexec_fn=place_pipe_fds,
            close_fds=False,  # closing would run after preexec_fn and take 3 and 4; our other fds are close-on-exec
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        os.close(child_in)
        os.close(child_out)
        self._write, self._read = to_browser_w, from_browser_r
        self._buffer = b""
        self._next_id = 0
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no answer from chromium over the DevTools pipe")
            ready, _, _ = select.select([self._read], [], [], remaining)
            if ready:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise ConnectionError(f"chromium closed the DevTools pipe (exit code {self.process.poll()})")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Call ``method`` and return its result; events that arrive meanwhile are kept in ``events``."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str | None = None) -> dict[str, Any]:
        """Wait for the first event ``method`` (of ``session``) not seen yet, and return it."""
        deadline = time.monotonic() + self.timeout
        index = 0
        while True:
            while index < len(self.events):
                event = self.events[index]
                index += 1
                if event.get("method") == method and (session is None or event.get("sessionId") == session):
                    self.events.remove(event)
                    return event
            self.events.append(self._receive(deadline))

    def close(self) -> None:
        """Ask the browser to quit, then make sure it has."""
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError, ConnectionError):
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        for fd in (self._write, self._read):
            os.close(fd)
        self._log.close()


_PAGE_STATE = """(() => {
  const imgs = Array.from(document.images).map(img => ({
    complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
    shown: img.getBoundingClientRect().width, scheme: (img.getAttribute('src') || '').split(':')[0]}));
  return {title: document.title, images: imgs, height: document.documentElement.scrollHeight,
          sections: Array.from(document.querySelectorAll('h2[id]')).map(h => h.id),
          tables: document.querySelectorAll('table').length,
          text: document.body ? document.body.innerText.length : 0};
})()"""


def _problems(events: list[dict[str, Any]], session: str) -> list[str]:
    """Console errors, uncaught exceptions, failed loads and error log entries among the page's events."""
    problems = []
    for event in events:
        if event.get("sessionId") != session:
            continue
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            problems.append(f"exception: {details.get('text')} {details.get('exception', {}).get('description', '')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            problems.append(f"console.{params.get('type')}: {[a.get('value') for a in params.get('args', [])]}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            problems.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        elif method == "Network.loadingFailed":
            problems.append(f"load failed: {params.get('errorText')}")
    return problems


def open_page(browser: DevToolsPipe, path: Path) -> tuple[dict[str, Any], list[str], bytes]:
    """Load ``path`` in a fresh tab; return the page state, the problems seen and a PNG screenshot."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.send(f"{domain}.enable", session=session)
    browser.events.clear()
    browser.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
    browser.wait_for("Page.loadEventFired", session=session)
    state = browser.send(
        "Runtime.evaluate", {"expression": _PAGE_STATE, "returnByValue": True, "awaitPromise": True}, session=session
    )["result"]["value"]
    shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
    problems = _problems(browser.events, session)
    browser.send("Target.closeTarget", {"targetId": target})
    return state, problems, base64.b64decode(shot)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """A headless Chromium for this module; skipped (or failed, when required) if there is none."""
    binary = chromium_or_skip()
    root = tmp_path_factory.mktemp("chromium")
    client = DevToolsPipe(binary, root / "profile", root / "chromium.log")
    try:
        client.send("Browser.getVersion")
    except (TimeoutError, ConnectionError) as error:
        client.close()
        pytest.fail(f"chromium did not start: {error}\n{(root / 'chromium.log').read_text(errors='replace')[-2000:]}")
    yield client
    client.close()


def test_report_renders_in_chromium(browser: DevToolsPipe, tmp_path: Path) -> None:
    card = write_sample(tmp_path, channels=3)
    html = write_report(card, tmp_path)["html"]
    state, problems, shot = open_page(browser, html)
    assert problems == []
    assert state["title"] == "Robustness report: demo"
    assert len(state["images"]) == 6  # five study figures and the detection ROC
    for image in state["images"]:
        assert image["scheme"] == "data"
        assert image["complete"] and image["width"] > 0 and image["height"] > 0 and image["shown"] > 0
    assert state["sections"][:5] == ["overview", "claims", "protocol", "attacks", "defenses"]
    assert state["tables"] >= 5 and state["text"] > 2000 and state["height"] > 2000
    assert shot.startswith(b"\x89PNG") and len(shot) > 10_000


def test_browser_check_catches_broken_pages(browser: DevToolsPipe, tmp_path: Path) -> None:
    """The checks above can fail: a broken image and a script error are both reported."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><head><title>broken</title><link rel="icon" href="data:,"></head><body>'
        '<img src="data:image/png;base64,bm90IGEgcG5n" alt="x"><script>undefinedFunction();</script></body></html>',
        encoding="utf-8",
    )
    state, problems, _ = open_page(browser, page)
    assert state["images"][0]["width"] == 0
    assert any("undefinedFunction" in p for p in problems), problems


@pytest.mark.parametrize("required", ["0", "1"])
def test_missing_browser_skips_or_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, required: str) -> None:
    """Without chromium the browser test is skipped, or fails when HASHGUARD_REQUIRE_BROWSER=1 (as in CI)."""
    monkeypatch.setenv("HASHGUARD_CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("HASHGUARD_REQUIRE_BROWSER", required)
    expected = pytest.fail.Exception if required == "1" else pytest.skip.Exception
    with pytest.raises(expected, match="chromium is not installed"):
        chromium_or_skip()
