"""Durability of one stream: a write-ahead log of accepted requests, and checkpoints.

Log (``wal.log``): a sequence of records, each framed as::

    length  uint32 LE   bytes of (seq + payload)
    crc32   uint32 LE   zlib.crc32 of (seq + payload)
    seq     uint64 LE   1, 2, 3, ... (consecutive over the stream's life)
    payload bytes       what the caller logged (a batch, outcome events)

:meth:`WriteAheadLog.append` writes one record and ``fsync`` s the file before it returns, so a
request is acknowledged only once its bytes are on disk. A crash can leave a *torn tail* (a
partial last record) but never a torn middle: a write that fails (disk full, file size limit,
I/O error) raises :class:`~embdrift.errors.StorageError` after cutting the file back to its
last intact record. :meth:`WriteAheadLog.open` reads records until the first one whose length
overruns the file, whose CRC does not match or whose sequence number is not the next one.
If nothing intact follows, that is a torn tail: it truncates the file there, logs a warning
with the number of bytes dropped, and returns the intact records after the checkpoint. If
intact records *do* follow (a flipped bit or an overwritten block in the middle of the log),
acknowledged records are damaged: it raises :class:`~embdrift.errors.StateFormatError`
naming the file, the byte offset and the records after it, and changes nothing, rather than
dropping acknowledged records silently (the operator restores a backup, or cuts the log at
the damage with the ``truncate`` command the message gives).

Checkpoint (``checkpoint.bin``): ``b"EMBDCKPT"``, version (uint16), the sequence number it
covers (uint64), CRC32 and length of the payload, then the payload. It is written atomically
(temporary file, ``fsync``, ``rename`` over the old one, ``fsync`` of the folder), so a crash
leaves either the old or the new checkpoint; a temporary file left by a crash is never read
and is removed by the next :meth:`WriteAheadLog.open`; a failed checkpoint write removes its
temporary file and keeps the log whole. After a checkpoint the log is truncated to zero
length (under the stream's lock, so no record is in flight). A crash between the rename and
the truncation is harmless: records with ``seq`` ≤ the checkpoint's are skipped on replay.

References
----------
The record framing and the checkpoint/truncate cycle follow the usual write-ahead-logging
discipline (Mohan et al. (1992), "ARIES", ACM TODS 17(1)), without undo: records are
redo-only and idempotent through their sequence numbers.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embdrift.errors import StateFormatError, StorageError

__all__ = ["Recovered", "WriteAheadLog", "read_checkpoint", "storage_error", "write_checkpoint"]

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


def storage_error(exc: OSError, path: Path, action: str) -> StorageError:
    """A :class:`StorageError` naming the file, what failed, the OS error and the fix."""
    code = exc.errno if exc.errno is not None else 0
    if code in (errno.ENOSPC, errno.EDQUOT):
        fix = "Free space on the disk that holds --state-dir (or raise the quota)"
    elif code == errno.EFBIG:
        fix = "Raise the file size limit of the service (ulimit -f) or free space"
    elif code == errno.EROFS:
        fix = "Remount the disk read-write, or restart with a --state-dir on a writable disk"
    elif code in (errno.EACCES, errno.EPERM):
        fix = "Give the service's user write access to --state-dir"
    elif code in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        fix = "Move the file that stands where a folder should be, or use another --state-dir"
    else:
        fix = "Check the disk (dmesg), or restart with a --state-dir on a healthy disk"
    return StorageError(
        f"Could not {action} {str(path)!r}: {exc.strerror or exc} (errno {code},"
        f" {errno.errorcode.get(code, '?')}). {fix}; nothing was acknowledged that is not"
        " on disk."
    )


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

    Notes
    -----
    A write that fails (disk full, file size limit, I/O error) raises
    :class:`~embdrift.errors.StorageError` after cutting the file back to its last intact
    record, so a later record never follows a torn one (which recovery would have to treat
    as damage). If even that cut fails, the log is *broken*: every later :meth:`append`
    raises until the service restarts, whose recovery truncates the torn tail.
    """

    def __init__(self, folder: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.folder = Path(folder)
        self.fsync = fsync
        self._fd: int | None = None
        self._seq = 0
        self._end = 0  # bytes of intact records in the file
        self._broken: OSError | None = None

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

    @property
    def broken(self) -> bool:
        """True after a failed write that could not be undone (see Notes)."""
        return self._broken is not None

    def __repr__(self) -> str:
        return f"WriteAheadLog({str(self.folder)!r}, last_seq={self._seq})"

    def open(self, *, after: int = 0) -> Recovered:
        """Read the log, truncate a torn tail, and open it for appending.

        Returns the intact records with ``seq > after`` (the checkpoint's sequence number).
        A damaged record followed by intact ones (damage in the middle, not a torn write)
        raises :class:`StateFormatError` and changes nothing; a folder that cannot be created
        or a log that cannot be read or truncated raises :class:`StorageError`.
        """
        try:
            return self._open(after)
        except OSError as exc:
            if isinstance(exc, StorageError):
                raise
            raise storage_error(exc, self.path, "open the write-ahead log") from None

    def _open(self, after: int) -> Recovered:
        created = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        if created:
            _fsync_dir(self.folder.parent)
        stale = self.checkpoint_path.with_name(self.checkpoint_path.name + ".tmp")
        if stale.exists():
            # a crash during write_checkpoint: checkpoint.bin (old or new) is intact
            log.warning("removing %s, left by a crash during a checkpoint write", stale)
            stale.unlink()
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
                fh.seek(good_end)
                self._refuse_damaged_middle(fh.read(), good_end, (expected or 1) - 1)
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
        self._end = good_end
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._broken = None
        return Recovered(records=records, truncated_bytes=dropped, last_seq=self._seq)

    def _refuse_damaged_middle(self, rest: bytes, offset: int, last_seq: int) -> None:
        """Raise if an intact record follows the bad bytes at ``offset`` (``rest`` is the file
        from there on): that is damage to acknowledged records, not a torn last write."""
        found = _next_intact(rest, last_seq)
        if found is None:
            return
        pos, first, count = found
        raise StateFormatError(
            f"The write-ahead log {str(self.path)!r} is damaged at byte {offset}: the record"
            f" after record {last_seq} does not verify (length or CRC32), yet {count} intact"
            f" records follow it from byte {offset + pos} (records {first} to"
            f" {first + count - 1}). That is not a torn tail left by a crash but damage to"
            " acknowledged records, so the service will not skip or drop them silently."
            " Restore the state folder from a backup; or keep a copy of the log and cut it"
            f" before the damage with `truncate -s {offset} {self.path}` (this drops the"
            f" damaged record and the {count} after it), then start again."
        )

    def append(self, payload: bytes) -> int:
        """Append one record (and fsync it); returns its sequence number.

        Raises :class:`StorageError` if the record could not be written and synced; the file
        is then cut back to its previous end (see Notes).
        """
        if self._fd is None:
            raise RuntimeError("WriteAheadLog.append before open().")
        if self._broken is not None:
            raise StorageError(
                f"The write-ahead log {str(self.path)!r} is unusable since a failed write"
                f" ({self._broken.strerror or self._broken}) left a torn record that could"
                " not be cut off. Fix the disk, then restart the service: recovery truncates"
                " the torn record (it was never acknowledged)."
            )
        seq = self._seq + 1
        body = _SEQ.pack(seq) + payload
        frame = memoryview(_FRAME.pack(len(body), zlib.crc32(body)) + body)
        try:
            written = 0
            while written < len(frame):
                written += os.write(self._fd, frame[written:])
            if self.fsync:
                os.fsync(self._fd)
        except OSError as exc:
            self._undo(exc)
            raise storage_error(exc, self.path, "append a record to the write-ahead log") from None
        self._end += len(frame)
        self._seq = seq
        return seq

    def _undo(self, exc: OSError) -> None:
        """Cut the file back to its last intact record after a failed append."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self._end)
            os.fsync(self._fd)
        except OSError as again:
            log.error(
                "write-ahead log %s: could not cut a failed write back to %d bytes (%s);"
                " refusing writes until a restart",
                self.path,
                self._end,
                again,
            )
            self._broken = exc

    def checkpoint(self, payload: bytes) -> None:
        """Write ``payload`` as the checkpoint covering every record so far, then truncate
        the log (the caller holds the stream's lock, so nothing is appended meanwhile).

        Raises :class:`StorageError` if the checkpoint could not be written; the log is then
        kept whole (it still holds every record), and the old checkpoint stays in place.
        """
        try:
            write_checkpoint(self.checkpoint_path, self._seq, payload)
        except OSError as exc:
            raise storage_error(exc, self.checkpoint_path, "write the checkpoint") from None
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                os.fsync(self._fd)
            except OSError as exc:
                # harmless: records up to the checkpoint's seq are skipped on replay
                log.warning(
                    "write-ahead log %s: truncation after a checkpoint failed: %s", self.path, exc
                )
            else:
                self._end = 0

    def size_bytes(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _next_intact(data: bytes, last_seq: int) -> tuple[int, int, int] | None:
    """First intact record in ``data[1:]`` with a sequence number above ``last_seq``:
    ``(offset, seq, count)`` with ``count`` intact consecutive records from there, or None.

    Candidates are the offsets whose 8 bytes after a frame header hold a plausible sequence
    number (at most one record per 16 bytes follows); only those are checked by CRC32.
    """
    hi = last_seq + len(data) // (_FRAME.size + _SEQ.size) + 1
    best: int | None = None
    for shift in range(8):
        base = 1 + _FRAME.size + shift
        n = (len(data) - base) // 8
        if n <= 0:
            continue
        seqs = np.frombuffer(data, dtype="<u8", count=n, offset=base)
        for hit in np.flatnonzero((seqs > last_seq) & (seqs <= hi)):
            pos = base + 8 * int(hit) - _FRAME.size
            if best is not None and pos >= best:
                break
            if _record_at(data, pos) is not None:
                best = pos
                break
    if best is None:
        return None
    first = _record_at(data, best)
    assert first is not None
    seq: int | None = first
    pos, count = best, 0
    while seq is not None and seq == first + count:
        count += 1
        (length,) = struct.unpack_from("<I", data, pos)
        pos += _FRAME.size + length
        seq = _record_at(data, pos)
    return best, first, count


def _record_at(data: bytes, pos: int) -> int | None:
    """Sequence number of the intact record framed at ``data[pos:]``, or None."""
    if pos + _FRAME.size + _SEQ.size > len(data):
        return None
    length, crc = _FRAME.unpack_from(data, pos)
    end = pos + _FRAME.size + length
    if length < _SEQ.size or end > len(data):
        return None
    body = data[pos + _FRAME.size : end]
    if zlib.crc32(body) != crc:
        return None
    return int(_SEQ.unpack_from(body)[0])


def write_checkpoint(path: str | os.PathLike[str], seq: int, payload: bytes) -> None:
    """Atomically replace the checkpoint at ``path``: tmp file, fsync, rename, fsync folder."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(_CKPT.pack(_CKPT_MAGIC, _CKPT_VERSION, seq, zlib.crc32(payload), len(payload)))
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)  # never leave a partial checkpoint beside the real one
        raise
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
