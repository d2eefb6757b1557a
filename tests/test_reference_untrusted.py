"""A reference file from an untrusted source: ``Reference.load`` refuses every forgery with a
:class:`ReferenceFormatError`, runs no code, opens no other file and allocates nothing the
size of a forged header.

An audit hook (PEP 578) records what the interpreter does while a file loads: unpickling
(``pickle.find_class``), code execution (``exec``, ``compile``), processes and every
``open``. Only the reference file itself may be opened.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embdrift import Reference
from embdrift.errors import ReferenceFormatError

_EVENTS: list[tuple[str, tuple[Any, ...]]] | None = None
_WATCHED = ("open", "pickle.find_class", "exec", "compile", "os.system", "subprocess.Popen")


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if _EVENTS is not None and (event in _WATCHED or event.startswith(("os.exec", "os.spawn"))):
        _EVENTS.append((event, args))


sys.addaudithook(_hook)


@contextmanager
def audited() -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    global _EVENTS
    _EVENTS = []
    try:
        yield _EVENTS
    finally:
        _EVENTS = None


def opened_paths(events: list[tuple[str, tuple[Any, ...]]]) -> set[str]:
    return {str(args[0]) for event, args in events if event == "open" and args[0] is not None}


@pytest.fixture(scope="module")
def ref_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    x = np.random.default_rng(3).normal(size=(300, 12)).astype(np.float32)
    path = Reference.fit(x, seed=0, n_components=4, n_random_features=64).save(
        tmp_path_factory.mktemp("ref") / "ref.npz"
    )
    Reference.load(path)  # warm-up: every lazy import of the load path happens here
    return path


def members(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files}


def npy_bytes(header: dict[str, Any], payload: bytes) -> bytes:
    text = repr(header).encode()
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + payload


def write_zip(path: Path, entries: dict[str, bytes], *, compress: bool = True) -> Path:
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=mode) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def saved_entries(arrays: dict[str, Any]) -> dict[str, bytes]:
    out = {}
    for key, value in arrays.items():
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=True)
        out[f"{key}.npy"] = buffer.getvalue()
    return out


def with_metadata(arrays: dict[str, np.ndarray], edit: Callable[[dict[str, Any]], Any]) -> dict:
    meta = json.loads(str(arrays["metadata"]))
    edited = edit(meta)
    text = json.dumps(meta if edited is None else edited)
    return {**arrays, "metadata": np.array(text)}


class _Touch:
    """Unpickling this creates ``path`` (stands for arbitrary code execution)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return (Path.touch, (self.path,))


def refuse(path: Path, match: str, **kwargs: Any) -> list[tuple[str, tuple[Any, ...]]]:
    """Load ``path`` under the audit hook; it must be refused with ``match`` and must only
    have opened ``path``."""
    with audited() as events, pytest.raises(ReferenceFormatError, match=match):
        Reference.load(path, **kwargs)
    kinds = {event for event, _ in events}
    # "compile" events do occur: numpy parses .npy headers with ast.literal_eval, which
    # compiles to an AST and evaluates literals only; "exec" is what runs code
    assert not kinds & {"pickle.find_class", "exec", "os.system", "subprocess.Popen"}
    assert opened_paths(events) <= {str(path)}, opened_paths(events)
    return events


def test_valid_reference_loads_and_only_its_file_is_opened(ref_file: Path) -> None:
    with audited() as events:
        ref = Reference.load(ref_file)
    assert ref.dim == 12
    assert opened_paths(events) == {str(ref_file)}
    assert not {e for e, _ in events} & {"pickle.find_class", "exec"}


def test_object_array_holding_a_pickle_is_never_unpickled(ref_file: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = dict(members(ref_file))
    evil["sample"] = np.array([[_Touch(marker)]], dtype=object)
    path = write_zip(tmp_path / "evil.npz", saved_entries(evil))
    # the harness can fail: numpy with allow_pickle=True runs the payload
    with np.load(path, allow_pickle=True) as archive:
        archive["sample"]
    assert marker.exists()
    marker.unlink()
    refuse(path, "no objects, no pickle")
    assert not marker.exists()
    # a pickle where the metadata belongs: refused the same way
    evil = dict(members(ref_file))
    evil["metadata"] = np.array([_Touch(marker)], dtype=object)
    refuse(write_zip(tmp_path / "evil2.npz", saved_entries(evil)), "no objects, no pickle")
    assert not marker.exists()


def test_extra_or_path_named_members_are_refused(ref_file: Path, tmp_path: Path) -> None:
    entries = saved_entries(members(ref_file))
    for name in (
        "../../etc/passwd.npy",
        "evil.pkl",
        "sample.npy/../x.npy",
        "/abs.npy",
        "null_1_../../x.npy",
        "null_0_scores.npy",
        "sample_groups.pkl",
    ):
        path = write_zip(tmp_path / "extra.npz", {**entries, name: b"x"})
        refuse(path, "members of an embdrift reference")
    missing = {k: v for k, v in entries.items() if k != "anchors.npy"}
    refuse(write_zip(tmp_path / "missing.npz", missing), "missing: \\['anchors.npy'\\]")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: "../../etc/passwd", "metadata of type str"),
        (lambda m: m.update(sample_path="../../etc/passwd"), "metadata keys"),
        (lambda m: m.update(format="/etc/passwd"), "has format"),
        (lambda m: m["params"].update(seed="../../etc/passwd"), "'seed' must be"),
        (lambda m: m["params"].update(n_bins={"path": "/etc/passwd"}), "'n_bins' must be"),
        (lambda m: m["params"].update(extra="/etc/shadow"), "reference params"),
        (lambda m: m.update(bandwidth="/etc/passwd"), "'bandwidth' must be"),
        (lambda m: m.update(bandwidth=float("nan")), "'bandwidth' must be"),
        (lambda m: m.update(bandwidth=-1.0), "'bandwidth' must be positive"),
        (lambda m: m.update(n_fit=True), "'n_fit' must be"),
        (lambda m: m.update(n_total=10**30), "'n_total' must be"),
        (lambda m: m.update(reference_id=["x"]), "'reference_id' must be"),
        (lambda m: m["params"].update(n_random_features=10**6), "rff_frequencies"),
        (lambda m: m["params"].update(n_bins=3), "pc1_edges"),
        (lambda m: m["params"].update(novelty_k=0), "novelty_k=0"),
        (lambda m: m["params"].update(novelty_k=10**6), "novelty_k=1000000"),
        (lambda m: m.update(nulls="../../etc/passwd"), "'nulls' must be"),
        (
            lambda m: m.update(nulls=[{"window": "/etc/passwd", "exact": 1, "metrics": []}]),
            "'nulls' must be",
        ),
        (lambda m: m.update(null_digest=None), "'null_digest' must be"),
    ],
)
def test_forged_metadata_is_refused_not_followed(
    ref_file: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], Any], match: str
) -> None:
    path = tmp_path / "forged.npz"
    np.savez(path, **with_metadata(members(ref_file), edit))
    refuse(path, match)


def test_deeply_nested_metadata_is_refused(ref_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "deep.npz"
    np.savez(path, **{**members(ref_file), "metadata": np.array("[" * 60_000)})
    refuse(path, "no readable embdrift metadata")
    np.savez(path, **{**members(ref_file), "metadata": np.array(" " * 100_000)})
    refuse(path, "metadata of 100000 characters")


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("sample", np.full((5, 12), np.nan, np.float32), "NaN or inf"),
        ("sample", np.zeros((5, 7), np.float32), "'sample' has shape"),
        ("pca_mean", np.zeros((2, 12)), "'pca_mean' has shape"),
        ("outer_pca_mean", np.full(12, 0.5), "different means"),
        ("anchors", np.zeros((0, 12), np.float32), "'anchors' has shape"),
        ("sample", np.zeros((5, 12), np.int64), "only float arrays"),
        ("sample", np.zeros((5, 12), np.complex64), "only float arrays"),
        ("metadata", np.array(["a", "b"]), "declares shape"),
    ],
)
def test_inconsistent_arrays_are_refused(
    ref_file: Path, tmp_path: Path, key: str, value: np.ndarray, match: str
) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **{**members(ref_file), key: value})
    refuse(path, match)


@pytest.mark.parametrize("shape", [(10**12, 12), (12, 10**12), (2**40, 2**30)])
def test_huge_declared_shape_is_refused_before_allocation(
    ref_file: Path, tmp_path: Path, shape: tuple[int, int]
) -> None:
    entries = saved_entries(members(ref_file))
    entries["sample.npy"] = npy_bytes(
        {"descr": "<f4", "fortran_order": False, "shape": shape}, b"\0" * 96
    )
    path = write_zip(tmp_path / "huge.npz", entries)
    tracemalloc.start()
    try:
        refuse(path, "declares shape")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"loading a forged header allocated {peak} bytes"


def test_zip_bomb_is_refused_before_unpacking(ref_file: Path, tmp_path: Path) -> None:
    """A member of 256 MiB of zeros (about 256 KiB deflated) with an honest header: the
    archive's declared size passes max_bytes, so nothing is unpacked."""
    entries = saved_entries(members(ref_file))
    rows = (256 << 20) // (12 * 4)
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            if name != "sample.npy":
                zf.writestr(name, data)
        with zf.open("sample.npy", "w", force_zip64=True) as fh:
            fh.write(npy_bytes({"descr": "<f4", "fortran_order": False, "shape": (rows, 12)}, b""))
            zeros = bytes(1 << 20)
            for _ in range(256):
                fh.write(zeros)
    assert path.stat().st_size < 4 << 20
    tracemalloc.start()
    try:
        refuse(path, "more than max_bytes", max_bytes=64 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"refusing a zip bomb allocated {peak} bytes"


def test_lying_zip_directory_is_refused(ref_file: Path, tmp_path: Path) -> None:
    """The central directory says a member is small but its data inflates further: zipfile
    reads only the declared size and the CRC check fails."""
    path = write_zip(tmp_path / "ok.npz", saved_entries(members(ref_file)))
    data = bytearray(path.read_bytes())
    target = b"sample.npy"
    info = zipfile.ZipFile(path).getinfo("sample.npy")
    # patch the uncompressed size in the central directory record of sample.npy
    cd = data.rfind(b"PK\x01\x02", 0, data.rfind(target))
    struct.pack_into("<I", data, cd + 24, info.file_size - 64)
    lh = info.header_offset
    struct.pack_into("<I", data, lh + 22, info.file_size - 64)
    forged = tmp_path / "lying.npz"
    forged.write_bytes(bytes(data))
    refuse(forged, "declares shape|not an embdrift reference")


def test_garbage_and_truncated_files(ref_file: Path, tmp_path: Path) -> None:
    data = ref_file.read_bytes()
    for i, cut in enumerate((10, len(data) // 2, len(data) - 30)):
        path = tmp_path / f"cut{i}.npz"
        path.write_bytes(data[:cut])
        refuse(path, "not an embdrift reference|declares shape|corrupt")
    path = tmp_path / "pickle.npz"
    path.write_bytes(pickle.dumps(_Touch(tmp_path / "pwned")))
    refuse(path, "not an embdrift reference")
    assert not (tmp_path / "pwned").exists()


def test_cli_refuses_a_forged_reference_with_exit_2(ref_file: Path, tmp_path: Path) -> None:
    evil = dict(members(ref_file))
    evil["sample"] = np.array([[_Touch(tmp_path / "pwned")]], dtype=object)
    path = write_zip(tmp_path / "evil.npz", saved_entries(evil))
    proc = subprocess.run(
        [sys.executable, "-m", "embdrift", "serve", "--reference", str(path), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "no objects, no pickle" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "pwned").exists()
