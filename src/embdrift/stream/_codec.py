"""Byte format of every streaming object: a magic header, JSON metadata and raw numpy arrays.

Layout: ``b"EMBDSTRM"`` (8 bytes), format version (uint16, little endian), length of the
UTF-8 JSON metadata (uint32), the JSON, then an ``.npz`` archive written by ``np.savez`` and read
back with ``allow_pickle=False``. Nothing is ever unpickled; object arrays cannot be stored.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from embdrift.errors import SketchFormatError

__all__ = ["FORMAT_VERSION", "decode", "encode"]

MAGIC = b"EMBDSTRM"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sHI")


def encode(kind: str, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> bytes:
    """Serialise ``meta`` (JSON-ready) and ``arrays`` under the object kind ``kind``."""
    text = json.dumps({"kind": kind, **meta}, sort_keys=True).encode()
    buffer = io.BytesIO()
    payload: dict[str, Any] = {key: np.asarray(value) for key, value in arrays.items()}
    np.savez(buffer, **payload)
    return _HEADER.pack(MAGIC, FORMAT_VERSION, len(text)) + text + buffer.getvalue()


def decode(data: bytes, kind: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Inverse of :func:`encode`; raises :class:`SketchFormatError` naming what is wrong."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SketchFormatError(
            f"{kind} state must be bytes from to_bytes(); got {type(data).__name__}."
        )
    raw = bytes(data)
    if len(raw) < _HEADER.size or raw[:8] != MAGIC:
        raise SketchFormatError(
            f"These {len(raw)} bytes are not a serialised embdrift {kind} (missing the"
            f" {MAGIC!r} header). Pass the output of to_bytes()/state_bytes()."
        )
    _, version, size = _HEADER.unpack_from(raw)
    if version != FORMAT_VERSION:
        raise SketchFormatError(
            f"The {kind} bytes are format version {version}; this embdrift reads version"
            f" {FORMAT_VERSION}. Rebuild the state with this version."
        )
    start = _HEADER.size
    try:
        meta = json.loads(raw[start : start + size].decode())
        with np.load(io.BytesIO(raw[start + size :]), allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (ValueError, UnicodeDecodeError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise SketchFormatError(f"The {kind} bytes are truncated or corrupt: {exc}.") from None
    if not isinstance(meta, dict) or meta.get("kind") != kind:
        found = meta.get("kind") if isinstance(meta, dict) else None
        raise SketchFormatError(
            f"The bytes hold a serialised {found!r}, not a {kind!r}. Call"
            f" {found}.from_bytes() instead."
        )
    return meta, arrays
