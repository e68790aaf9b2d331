"""A minimal Chrome DevTools Protocol client for the browser test and the dashboard benchmark: starts
Debian's headless Chromium, opens one page, evaluates JavaScript, watches navigations and takes screenshots.
Synchronous, over the `websockets` package Streamlit already depends on; no other browser driver needed."""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from websockets.sync.client import connect

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--mute-audio", "--window-size=1400,1000", "--remote-debugging-port=0"]


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError("no chromium on PATH: install Debian's `chromium` (scripts/setup.sh does with "
                            "MUSICREC_BROWSER_TESTS=1)")


class CDPError(RuntimeError):
    pass


class Browser:
    """`with Browser() as b: page = b.new_page(url)`; the profile is a fresh temporary folder."""

    def __init__(self, timeout_s: float = 30.0):
        self.timeout_s = timeout_s
        self.profile = Path(tempfile.mkdtemp(prefix="musicrec-chromium-"))
        self.proc = subprocess.Popen([chromium_path(), *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None:
                raise CDPError(f"chromium exited with code {self.proc.returncode} before opening DevTools")
            if time.monotonic() > deadline:
                self.close()
                raise CDPError("chromium did not open its DevTools port in time")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self.ws = connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=timeout_s)
        self._next = 0
        self.events: list[dict] = []

    # --- protocol -----------------------------------------------------------------------------------------
    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout_s: float | None = None) -> dict:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CDPError(f"{method}: no answer in time")
            reply = json.loads(self.ws.recv(timeout=left))
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def pump(self, seconds: float) -> None:
        """Collect events for a while (navigations are recorded in self.events)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                reply = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                return
            if "method" in reply:
                self.events.append(reply)

    def new_page(self, url: str) -> "Page":
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.send("Page.enable")
        page.send("Runtime.enable")
        page.navigate(url)
        return page

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    def __init__(self, browser: Browser, session: str):
        self.browser, self.session = browser, session

    def send(self, method: str, params: dict | None = None, timeout_s: float | None = None) -> dict:
        return self.browser.send(method, params, session=self.session, timeout_s=timeout_s)

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise CDPError(f"JS error: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_for(self, predicate, timeout_s: float, poll_s: float = 0.25, what: str = "condition"):
        """Poll `predicate(page)` until it returns something truthy; returns it."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = predicate(self)
            if value:
                return value
            if time.monotonic() > deadline:
                raise CDPError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            self.browser.pump(poll_s)

    def navigations(self) -> list[dict]:
        """Main-frame navigations seen so far (a reload shows up here)."""
        return [e for e in self.browser.events if e.get("sessionId") == self.session
                and e.get("method") == "Page.frameNavigated"
                and not e["params"]["frame"].get("parentId")]

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
