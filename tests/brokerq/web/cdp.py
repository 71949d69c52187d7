"""A headless Chromium (Debian's ``chromium``) driven over the DevTools protocol.

Playwright cannot download its own browser here, so tests drive the system binary: start it
with ``--remote-debugging-port=0``, read the port it chose from ``DevToolsActivePort`` in its
fresh profile directory, and talk JSON over the page's websocket (websocket-client).
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import websocket

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
]


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def wait_for(condition: Any, timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll ``condition()`` until it returns something truthy; TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class Browser:
    """One Chromium process with one page; ``close()`` ends the process."""

    def __init__(self, binary: str, profile: Path, width: int = 1366, height: int = 900) -> None:
        self.profile = profile
        profile.mkdir(parents=True, exist_ok=True)
        self.log = open(profile / "chromium.log", "wb")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._ids = itertools.count(1)
        self.console: list[str] = []  # console errors, exceptions, CSP violations
        port_file = profile / "DevToolsActivePort"
        try:
            wait_for(lambda: port_file.exists() and port_file.read_text().strip(), 30, "chromium")
            port = int(port_file.read_text().split()[0])
            self.ws = websocket.create_connection(self._page_socket(port), timeout=30)
            self.call("Page.enable")
            self.call("Runtime.enable")
            self.call("Log.enable")  # CSP violations and network errors arrive as log entries
            self.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _page_socket(port: int) -> str:
        def page() -> str | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                targets = json.load(r)
            return next(
                (t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page"), None
            )

        url: str = wait_for(page, 30, "a page target")
        return url

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one command and return its result (events received meanwhile are kept)."""
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if reply.get("method") == "Runtime.consoleAPICalled":
                args = reply["params"].get("args", [])
                self.console.append(" ".join(str(a.get("value", "")) for a in args))
            elif reply.get("method") == "Log.entryAdded":
                entry = reply["params"]["entry"]
                if entry.get("level") in ("error", "warning"):
                    self.console.append(
                        f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}"
                    )
            elif reply.get("method") == "Runtime.exceptionThrown":
                self.console.append(json.dumps(reply["params"].get("exceptionDetails", {}))[:500])

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def ready(self, path_prefix: str = "") -> bool:
        state = self.evaluate("document.readyState + ' ' + location.pathname")
        ready, _, path = str(state).partition(" ")
        return ready == "complete" and path.startswith(path_prefix)

    def goto(self, url: str, timeout: float = 30) -> None:
        """Navigate and wait until the new document (not the one before it) has loaded."""
        marker = f"brokerq-{next(self._ids)}"
        self.evaluate(f"window.__left = {json.dumps(marker)}")  # gone once the new page is in
        self.call("Page.navigate", {"url": url})
        path = urllib.parse.urlsplit(url).path or "/"
        wait_for(
            lambda: self.evaluate("window.__left === undefined") and self.ready(path),
            timeout,
            f"{url} to load",
        )

    def click(self, selector: str) -> None:
        found = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return false; e.click(); return true; })()"
        )
        if not found:
            raise AssertionError(f"nothing matches {selector!r}")

    def text(self, selector: str = "body") -> str:
        value = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " return e ? e.innerText : ''; })()"
        )
        return str(value or "")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            try:
                ws.close()
            except Exception:
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
