"""Durability of one stream: a write-ahead log of accepted requests, and checkpoints.

Log (``wal.log``): a sequence of records, each framed as::

    length  uint32 LE   bytes of (seq + payload)
    crc32   uint32 LE   zlib.crc32 of (seq + payload)
    seq     uint64 LE   1, 2, 3, ... (consecutive over the stream's life)
    payload bytes       what the caller logged (a batch, outcome events)

:meth:`WriteAheadLog.append` writes one record and ``fsync`` s the file before it returns, so a
request is acknowledged only once its bytes are on disk. A crash can leave a *torn tail* (a
partial last record) but never a torn middle; :meth:`WriteAheadLog.open` reads records until
the first one whose length overruns the file, whose CRC does not match or whose sequence
number is not the next one, truncates the file there, logs a warning with the number of bytes
dropped, and returns the intact records after the checkpoint.

Checkpoint (``checkpoint.bin``): ``b"EMBDCKPT"``, version (uint16), the sequence number it
covers (uint64), CRC32 and length of the payload, then the payload. It is written atomically
(temporary file, ``fsync``, ``rename`` over the old one, ``fsync`` of the folder), so a crash
leaves either the old or the new checkpoint. After a checkpoint the log is truncated to zero
length (under the stream's lock, so no record is in flight). A crash between the rename and
the truncation is harmless: records with ``seq`` ≤ the checkpoint's are skipped on replay.

References
----------
The record framing and the checkpoint/truncate cycle follow the usual write-ahead-logging
discipline (Mohan et al. (1992), "ARIES", ACM TODS 17(1)), without undo: records are
redo-only and idempotent through their sequence numbers.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from embdrift.errors import StateFormatError

__all__ = ["Recovered", "WriteAheadLog", "read_checkpoint", "write_checkpoint"]

log = logging.getLogger("embdrift.serve")

_FRAME = struct.Struct("<II")  # length, crc32
_SEQ = struct.Struct("<Q")
_CKPT = struct.Struct("<8sHQII")  # magic, version, seq, crc32, length
_CKPT_MAGIC = b"EMBDCKPT"
_CKPT_VERSION = 1
#: Largest record accepted when reading (a corrupt length must not make us allocate GBs).
MAX_RECORD_BYTES = 1 << 31


@dataclass(frozen=True, slots=True)
class Recovered:
    """What :meth:`WriteAheadLog.open` found: the intact records after the checkpoint (in
    order, as ``(seq, payload)``) and how many torn/corrupt tail bytes it truncated."""

    records: list[tuple[int, bytes]]
    truncated_bytes: int
    last_seq: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteAheadLog:
    """The append-only, fsynced record log of one stream (see the module docstring).

    Parameters
    ----------
    folder : path-like
        The stream's state folder (created if missing); holds ``wal.log`` and
        ``checkpoint.bin``.
    fsync : bool
        Flush every record to disk before :meth:`append` returns (default True). Turning it
        off trades durability of the last records for speed; tests of durability keep it on.
    """

    def __init__(self, folder: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.folder = Path(folder)
        self.fsync = fsync
        self._file: BinaryIO | None = None
        self._seq = 0

    @property
    def path(self) -> Path:
        return self.folder / "wal.log"

    @property
    def checkpoint_path(self) -> Path:
        return self.folder / "checkpoint.bin"

    @property
    def last_seq(self) -> int:
        """Sequence number of the last record appended (or recovered)."""
        return self._seq

    def __repr__(self) -> str:
        return f"WriteAheadLog({str(self.folder)!r}, last_seq={self._seq})"

    def open(self, *, after: int = 0) -> Recovered:
        """Read the log, truncate a torn or corrupt tail, and open it for appending.

        Returns the intact records with ``seq > after`` (the checkpoint's sequence number).
        """
        created = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        if created:
            _fsync_dir(self.folder.parent)
        records: list[tuple[int, bytes]] = []
        good_end = 0
        last = after
        size = self.path.stat().st_size if self.path.exists() else 0
        expected: int | None = None
        with open(self.path, "a+b") as fh:
            fh.seek(0)
            while True:
                head = fh.read(_FRAME.size)
                if len(head) < _FRAME.size:
                    break
                length, crc = _FRAME.unpack(head)
                if length < _SEQ.size or length > MAX_RECORD_BYTES or good_end + 8 + length > size:
                    break
                body = fh.read(length)
                if len(body) < length or zlib.crc32(body) != crc:
                    break
                (seq,) = _SEQ.unpack_from(body)
                if expected is not None and seq != expected:
                    break
                expected = seq + 1
                good_end = fh.tell()
                if seq > after:
                    if seq != last + 1:
                        raise StateFormatError(
                            f"The write-ahead log {str(self.path)!r} jumps from record {last}"
                            f" to {seq}: records are missing after the checkpoint. The state"
                            " folder was edited or mixed with another; restore it from a"
                            " backup or start with a fresh --state-dir."
                        )
                    records.append((seq, body[_SEQ.size :]))
                    last = seq
            dropped = size - good_end
        if dropped:
            log.warning(
                "write-ahead log %s: dropped a torn or corrupt tail of %d bytes after %d"
                " intact records (a crash during a write; those requests were never"
                " acknowledged)",
                self.path,
                dropped,
                len(records),
            )
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
                fh.flush()
                os.fsync(fh.fileno())
        self._seq = max(last, expected - 1 if expected is not None else 0, after)
        self._file = open(self.path, "ab")  # noqa: SIM115 (kept open for appends)
        return Recovered(records=records, truncated_bytes=dropped, last_seq=self._seq)

    def append(self, payload: bytes) -> int:
        """Append one record (and fsync it); returns its sequence number."""
        if self._file is None:
            raise RuntimeError("WriteAheadLog.append before open().")
        seq = self._seq + 1
        body = _SEQ.pack(seq) + payload
        self._file.write(_FRAME.pack(len(body), zlib.crc32(body)) + body)
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())
        self._seq = seq
        return seq

    def checkpoint(self, payload: bytes) -> None:
        """Write ``payload`` as the checkpoint covering every record so far, then truncate
        the log (the caller holds the stream's lock, so nothing is appended meanwhile)."""
        write_checkpoint(self.checkpoint_path, self._seq, payload)
        if self._file is not None:
            self._file.truncate(0)
            self._file.flush()
            os.fsync(self._file.fileno())

    def size_bytes(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def write_checkpoint(path: str | os.PathLike[str], seq: int, payload: bytes) -> None:
    """Atomically replace the checkpoint at ``path``: tmp file, fsync, rename, fsync folder."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(_CKPT.pack(_CKPT_MAGIC, _CKPT_VERSION, seq, zlib.crc32(payload), len(payload)))
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    _fsync_dir(target.parent)


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[int, bytes] | None:
    """``(seq, payload)`` of the checkpoint at ``path``, or None if there is none.

    A checkpoint that does not verify raises :class:`StateFormatError`: unlike the log's tail
    it was written atomically, so damage means the folder was tampered with.
    """
    target = Path(path)
    if not target.exists():
        return None
    raw = target.read_bytes()
    try:
        magic, version, seq, crc, length = _CKPT.unpack_from(raw)
    except struct.error:
        magic, version, seq, crc, length = b"", 0, 0, 0, -1
    payload = raw[_CKPT.size :]
    if magic != _CKPT_MAGIC or version != _CKPT_VERSION:
        raise StateFormatError(
            f"{str(target)!r} is not an embdrift checkpoint of version {_CKPT_VERSION}. Point"
            " --state-dir at the folder this service wrote, or at an empty one."
        )
    if len(payload) != length or zlib.crc32(payload) != crc:
        raise StateFormatError(
            f"The checkpoint {str(target)!r} is damaged (length or CRC32 mismatch). Restore the"
            " folder from a backup, or move it away to start the stream afresh."
        )
    return int(seq), payload
