"""Helpers of the service tests (tests/serve): .npy bodies, free ports, a server process."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

DIM = 32
WINDOW = 200
CALIBRATION = 199


def npy_bytes(x: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, x)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``embdrift serve`` in a subprocess on a free 127.0.0.1 port (``preexec_fn``, if set,
    runs in the child before ``exec``: resource limits for fault tests)."""

    preexec_fn: Callable[[], None] | None = None

    def __init__(self, args: list[str], log: Path) -> None:
        self.args = args
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Server:
        cmd = [sys.executable, "-m", "embdrift", "serve", *self.args, "--port", str(self.port)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("EMBDRIFT_TOKEN", None)
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, preexec_fn=self.preexec_fn
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"server not ready in {timeout} s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, no checkpoint is written."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM: uvicorn shuts down cleanly (the registry checkpoints every stream)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
