"""A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (no websocket
library needed): the browser reads NUL-terminated JSON commands on fd 3 and writes responses and
events on fd 4.

Used by the report tests to open a file in real headless Chromium, collect console messages,
exceptions and network requests, evaluate expressions in the page (CDP evaluation is not subject
to the page's Content Security Policy), and take a screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM", "PageVisit", "chromium_available", "visit"]

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--remote-debugging-pipe",
]


def chromium_available() -> bool:
    return Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)


@dataclass
class PageVisit:
    """What happened while a page was open."""

    console: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    log_entries: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    screenshot: Path | None = None

    @property
    def errors(self) -> list[str]:
        out = [str(e) for e in self.exceptions]
        out += [str(c) for c in self.console if c.get("type") in {"error", "assert"}]
        out += [str(e) for e in self.log_entries if e.get("level") == "error"]
        return out


class _Pipe:
    def __init__(self, proc: subprocess.Popen[bytes], to_browser: int, from_browser: int):
        self.proc = proc
        self.to_browser = to_browser
        self.from_browser = from_browser
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        self.profile = ""

    def log_tail(self) -> str:
        log = Path(self.profile) / "chromium.log"
        return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None):
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        try:
            os.write(self.to_browser, json.dumps(msg).encode() + b"\0")
        except BrokenPipeError:
            raise RuntimeError(f"chromium closed the DevTools pipe: {self.log_tail()}") from None
        return self.wait_for(lambda m, i=self.next_id: m.get("id") == i)

    def wait_for(self, predicate: Any, timeout: float = 60.0) -> dict[str, Any]:
        for i, ev in enumerate(self.events):
            if predicate(ev):
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                msg = json.loads(raw)
                if predicate(msg):
                    if "error" in msg:
                        raise RuntimeError(f"CDP error: {msg['error']}")
                    return msg
                self.events.append(msg)
            ready, _, _ = select.select([self.from_browser], [], [], 0.5)
            if ready:
                chunk = os.read(self.from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed the DevTools pipe: {self.log_tail()}")
                self.buffer += chunk
        raise TimeoutError("no answer from chromium over the DevTools pipe")


def visit(
    url: str,
    *,
    expressions: dict[str, str],
    screenshot: Path | None = None,
    width: int = 1100,
    height: int = 900,
    settle: float = 1.0,
) -> PageVisit:
    """Open ``url`` in a fresh headless Chromium profile, evaluate ``expressions`` (name →
    JavaScript returning a JSON-serialisable value), optionally save a full-page screenshot,
    and report console messages, exceptions and every network request."""
    profile = tempfile.mkdtemp(prefix="embdrift-chromium-")
    # fds 3 (browser reads) and 4 (browser writes) in the child, as --remote-debugging-pipe wants
    child_read, parent_write = os.pipe()
    parent_read, child_write = os.pipe()

    # bash (dash allows only one-digit fds) moves the pipe ends onto fds 3 and 4, then execs
    script = f'exec "$0" "$@" 3<&{child_read} 4>&{child_write}'
    log = open(Path(profile) / "chromium.log", "wb")  # noqa: SIM115 - closed right after spawn
    proc = subprocess.Popen(
        ["/bin/bash", "-c", script, CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        pass_fds=(child_read, child_write),
    )
    log.close()
    os.close(child_read)
    os.close(child_write)
    pipe = _Pipe(proc, parent_write, parent_read)
    pipe.profile = profile
    result = PageVisit()
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"})["result"]["targetId"]
        session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "result"
        ]["sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Network.enable", "Page.enable"):
            pipe.send(domain, session=session)
        pipe.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        pipe.send("Page.navigate", {"url": url}, session=session)
        pipe.wait_for(lambda m: m.get("method") == "Page.loadEventFired")
        time.sleep(settle)
        for name, expression in expressions.items():
            answer = pipe.send(
                "Runtime.evaluate",
                {"expression": expression, "returnByValue": True},
                session=session,
            )["result"]
            if "exceptionDetails" in answer:
                raise RuntimeError(f"evaluating {name!r} failed: {answer['exceptionDetails']}")
            result.values[name] = answer["result"].get("value")
        if screenshot is not None:
            shot = pipe.send(
                "Page.captureScreenshot",
                {"format": "png", "captureBeyondViewport": True},
                session=session,
            )["result"]["data"]
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot))
            result.screenshot = screenshot
        # drain what is pending so late console messages are seen too
        try:
            pipe.wait_for(lambda m: False, timeout=0.5)
        except TimeoutError:
            pass
        for ev in pipe.events:
            method, params = ev.get("method"), ev.get("params", {})
            if method == "Runtime.consoleAPICalled":
                result.console.append(
                    {"type": params.get("type"), "args": [a.get("value") for a in params["args"]]}
                )
            elif method == "Runtime.exceptionThrown":
                result.exceptions.append(params.get("exceptionDetails", {}))
            elif method == "Log.entryAdded":
                result.log_entries.append(params.get("entry", {}))
            elif method == "Network.requestWillBeSent":
                result.requests.append(params["request"]["url"])
    finally:
        try:
            pipe.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(parent_write)
        os.close(parent_read)
        shutil.rmtree(profile, ignore_errors=True)
    return result
