"""Helpers of the service tests (tests/serve) and of the reliability benchmarks
(benchmarks/faults.py, benchmarks/hostile.py): .npy bodies (valid, forged headers, pickled
payloads), free ports, state-folder listings, a server process."""

from __future__ import annotations

import io
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

DIM = 32
WINDOW = 200
CALIBRATION = 199
#: Request paths whose stream segment tries to leave its folder (raw, not normalised by the
#: client): each must be refused and write nothing.
TRICK_PATHS = [
    "/v1/streams/../embeddings",
    "/v1/streams/a/../b/embeddings",
    "/v1/streams//embeddings",
    "/v1/streams/%2F/embeddings",
    "/v1/streams/search/../../../../etc/passwd",
    "/v1/streams/./embeddings",
]


def npy_bytes(x: np.ndarray) -> bytes:
    """``numpy.save`` of ``x`` (object arrays pickled, numpy's default: tests need those)."""
    buffer = io.BytesIO()
    np.save(buffer, x)
    return buffer.getvalue()


def npy_body(header: Any, payload: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    """An .npy file with an arbitrary header dict literal (numpy.lib.format layout)."""
    text = (header if isinstance(header, str) else repr(header)).encode("latin1")
    length_size = 2 if version == (1, 0) else 4
    pad = -(6 + 2 + length_size + len(text) + 1) % 64
    text = text + b" " * pad + b"\n"
    size = struct.pack("<H" if length_size == 2 else "<I", len(text))
    return b"\x93NUMPY" + bytes(version) + size + text + payload


class _Touch:
    """Unpickling this creates ``path`` (a stand-in for arbitrary code execution)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return (Path.touch, (self.path,))


def pickled_npy(marker: Path, *, cols: int = 1) -> bytes:
    """An .npy of dtype object and shape ``(1, cols)`` whose payload is a pickle that creates
    ``marker``."""
    header = {"descr": "|O", "fortran_order": False, "shape": (1, cols)}
    return npy_body(header, pickle.dumps(np.array([[_Touch(marker)] * cols], dtype=object)))


def listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` with its size and mtime (ns)."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


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
