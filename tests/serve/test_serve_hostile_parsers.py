"""Hostile bodies against the request parsers of serve/batch.py (hypothesis + crafted cases).

Every body either parses into a valid batch or raises an embdrift error that the service maps
to a 4xx (``error_kind``); never another exception, never a RuntimeWarning (warnings are
errors in this suite), never an allocation the size of a forged ``.npy`` header, never an
unpickle.
"""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embdrift.errors import (
    BadStreamNameError,
    EmbdriftError,
    InvalidBodyError,
    InvalidEmbeddingsError,
    PayloadTooLargeError,
)
from embdrift.serve.app import error_kind
from embdrift.serve.batch import (
    NAME_PATTERN,
    Batch,
    OutcomeEvents,
    check_name,
    parse_embeddings_json,
    parse_npy,
    parse_outcomes_json,
)
from serve_support import npy_body, npy_bytes, pickled_npy

MAX_ROWS = 64
FAST = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def outcome(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a parser; return its result, or the 4xx status of the embdrift error it raised.
    Any other exception propagates and fails the test."""
    try:
        return call(*args, **kwargs)
    except EmbdriftError as exc:
        status, kind = error_kind(exc)
        assert 400 <= status < 500, (status, kind, exc)
        assert str(exc), "an error without a message"
        return status


def check_batch(result: Any) -> None:
    if isinstance(result, Batch):
        x = result.embeddings
        assert x.dtype == np.float32 and x.ndim == 2 and x.size > 0
        assert np.isfinite(x).all()


# ---------------------------------------------------------------------- arbitrary bytes
@FAST
@given(body=st.binary(max_size=2048))
def test_arbitrary_bytes_never_escape(body: bytes) -> None:
    check_batch(outcome(parse_npy, body, max_rows=MAX_ROWS))
    check_batch(outcome(parse_embeddings_json, body, max_rows=MAX_ROWS))
    outcome(parse_outcomes_json, body)


@FAST
@given(body=st.binary(max_size=512))
def test_npy_magic_followed_by_garbage(body: bytes) -> None:
    for version in (b"\x01\x00", b"\x02\x00", b"\x03\x00"):
        check_batch(outcome(parse_npy, b"\x93NUMPY" + version + body, max_rows=MAX_ROWS))


# ---------------------------------------------------------------------- JSON
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=40,
)
rows = st.lists(
    st.lists(
        st.floats(allow_nan=True, allow_infinity=True, width=64)
        | st.integers(min_value=-(10**40), max_value=10**40),
        min_size=0,
        max_size=6,
    ),
    min_size=0,
    max_size=8,
)


@FAST
@given(
    embeddings=rows | json_values,
    ids=st.none() | st.lists(st.text(max_size=300) | st.integers(), max_size=8) | json_values,
    timestamps=st.none()
    | st.lists(st.floats(allow_nan=True) | st.integers(min_value=-(10**30), max_value=10**30))
    | st.lists(st.text(max_size=30))
    | json_values,
    outcomes=st.none()
    | st.dictionaries(st.text(max_size=70), st.lists(json_scalars, max_size=8), max_size=20)
    | json_values,
    extra=st.dictionaries(st.sampled_from(["x", "embedding", "IDS"]), json_values, max_size=1),
)
def test_ingest_json_fields(
    embeddings: Any, ids: Any, timestamps: Any, outcomes: Any, extra: dict[str, Any]
) -> None:
    data = {"embeddings": embeddings, **extra}
    for key, value in (("ids", ids), ("timestamps", timestamps), ("outcomes", outcomes)):
        if value is not None:
            data[key] = value
    body = json.dumps(data, allow_nan=True).encode()
    result = outcome(parse_embeddings_json, body, max_rows=MAX_ROWS)
    check_batch(result)
    if isinstance(result, Batch):
        m = result.n_rows
        assert result.ids is None or result.ids.shape == (m,)
        assert result.timestamps is None or result.timestamps.dtype == np.int64
        assert all(v.shape == (m,) and not np.isinf(v).any() for v in result.outcomes.values())


@FAST
@given(outcomes=json_values, timestamps=st.none() | json_values)
def test_outcomes_json_fields(outcomes: Any, timestamps: Any) -> None:
    data = {"outcomes": outcomes}
    if timestamps is not None:
        data["timestamps"] = timestamps
    result = outcome(parse_outcomes_json, json.dumps(data, allow_nan=True).encode())
    if isinstance(result, OutcomeEvents):
        assert all(not np.isinf(v).any() for v in result.outcomes.values())


@pytest.mark.parametrize(
    ("body", "error", "match"),
    [
        (b"[" * 100_000, InvalidBodyError, "nested too deeply"),
        (b'{"embeddings": ' + b"[" * 100_000, InvalidBodyError, "nested too deeply"),
        (b'{"outcomes": ' + b'{"a": ' * 50_000, InvalidBodyError, "nested too deeply"),
        (b'{"embeddings": [[1.0]], "embeddings": [[2.0]]}', InvalidBodyError, "repeats the key"),
        (b'{"embeddings": [[1.0]], "ids": ["\xff\xfe"]}', InvalidBodyError, "not valid JSON"),
        (b'{"embeddings": [[1e300, 1.0]]}', InvalidEmbeddingsError, "float32 range"),
        (b'{"embeddings": [[NaN, 1.0]]}', InvalidEmbeddingsError, "finite"),
        (b'{"embeddings": [[Infinity]]}', InvalidEmbeddingsError, "finite"),
        (b'{"embeddings": [[1' + b"0" * 5000 + b"]]}", InvalidBodyError, "not valid JSON"),
        (b'{"embeddings": [[1.0], [1.0, 2.0]]}', InvalidEmbeddingsError, "ragged"),
        (b'{"embeddings": [[1.0]], "timestamps": [1e300]}', InvalidBodyError, "1678-2261"),
        (b'{"embeddings": [[1.0]], "timestamps": ["99999-01-01"]}', InvalidBodyError, "1678"),
        (b'{"embeddings": [[1.0]], "ids": ["a\\u0000b"]}', InvalidBodyError, "control"),
        (b'{"embeddings": [[1.0]], "ids": ["\\ud800"]}', InvalidBodyError, "surrogate"),
        (
            b'{"embeddings": [[1.0]], "outcomes": {"a": [1' + b"0" * 400 + b"]}}",
            InvalidBodyError,
            "finite",
        ),
    ],
)
def test_crafted_json_bodies(body: bytes, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        parse_embeddings_json(body, max_rows=MAX_ROWS)


def test_deep_outcomes_json_and_row_cap() -> None:
    with pytest.raises(InvalidBodyError, match="nested too deeply"):
        parse_outcomes_json(b'{"outcomes": ' + b"[" * 100_000)
    body = json.dumps({"embeddings": [[0.5, 0.5]] * (MAX_ROWS + 1)}).encode()
    with pytest.raises(PayloadTooLargeError, match="--max-rows"):
        parse_embeddings_json(body, max_rows=MAX_ROWS)


# ---------------------------------------------------------------------- .npy
descrs = st.sampled_from(
    ["<f4", ">f4", "<f8", ">f8", "<f2", "<c8", "<i8", "|u1", "|b1", "|O", "<U4", "|V8", "zz"]
) | st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["<f4", "|O"])), max_size=2)
dims = st.integers(min_value=-3, max_value=6) | st.sampled_from([10**12, 2**63, 2**64 + 1])


@FAST
@given(
    descr=descrs,
    fortran=st.booleans() | st.sampled_from([0, "yes", None]),
    shape=st.lists(dims, max_size=3).map(tuple) | st.sampled_from(["x", (True, 1), (1.5, 2)]),
    payload=st.binary(max_size=256),
    exact=st.booleans(),
    version=st.sampled_from([(1, 0), (2, 0)]),
)
def test_npy_headers(
    descr: Any, fortran: Any, shape: Any, payload: bytes, exact: bool, version: tuple[int, int]
) -> None:
    if exact and isinstance(shape, tuple) and all(type(v) is int and 0 < v < 50 for v in shape):
        # a payload of exactly the declared size, so the parser gets past the length check
        try:
            size = int(np.prod(shape)) * np.dtype(descr).itemsize
        except (TypeError, ValueError):
            size = len(payload)
        payload = (payload * (size // max(len(payload), 1) + 1))[:size]
    header = {"descr": descr, "fortran_order": fortran, "shape": shape}
    result = outcome(parse_npy, npy_body(header, payload, version), max_rows=MAX_ROWS)
    check_batch(result)
    if isinstance(result, Batch):
        assert result.embeddings.shape == shape
        assert np.dtype(descr).kind == "f" and np.dtype(descr).itemsize in (4, 8)


@FAST
@given(
    x=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=24),
    cols=st.integers(1, 4),
    dtype=st.sampled_from(["<f4", ">f4", "<f8", ">f8"]),
    fortran=st.booleans(),
    cut=st.integers(0, 40),
)
def test_npy_valid_arrays_round_trip_or_truncated(
    x: list[float], cols: int, dtype: str, fortran: bool, cut: int
) -> None:
    n = len(x) // cols
    if n == 0:
        return
    with np.errstate(over="ignore"):
        arr = np.asarray(x[: n * cols], dtype=np.float64).reshape(n, cols).astype(dtype)
    if fortran:
        arr = np.asfortranarray(arr)
    body = npy_bytes(arr)
    result = outcome(parse_npy, body, max_rows=MAX_ROWS)
    f32_max = float(np.finfo(np.float32).max)
    if np.isfinite(arr).all() and (np.abs(arr.astype(np.float64)) <= f32_max).all():
        assert isinstance(result, Batch)
        np.testing.assert_array_equal(result.embeddings, arr.astype(np.float32))
    else:
        assert result == 422
    if cut:
        assert outcome(parse_npy, body[:-cut], max_rows=MAX_ROWS) == 400


@pytest.mark.parametrize("shape", [(10**12, 8), (8, 10**12), (10**6, 10**6), (2**40, 2**20)])
def test_huge_declared_npy_shape_refused_from_the_header(shape: tuple[int, int]) -> None:
    """The header announces terabytes; the parser must refuse it without allocating (the
    body has 64 bytes), even with the row cap out of the way."""
    body = npy_body({"descr": "<f8", "fortran_order": False, "shape": shape}, b"\0" * 64)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidBodyError, match="announces shape"):
            parse_npy(body, max_rows=10**15)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"parsing a forged header allocated {peak} bytes"
    if shape[0] > MAX_ROWS:
        with pytest.raises(PayloadTooLargeError, match="--max-rows"):
            parse_npy(body, max_rows=MAX_ROWS)


def test_pickled_npy_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    body = pickled_npy(marker)
    # the harness can fail: numpy with allow_pickle=True does run the payload
    np.load(io.BytesIO(body), allow_pickle=True)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(InvalidEmbeddingsError, match="object and pickled arrays"):
        parse_npy(body, max_rows=MAX_ROWS)
    with pytest.raises(InvalidEmbeddingsError, match="float32 or float64"):
        parse_npy(npy_bytes(np.array([[{"a": 1}]], dtype=object)), max_rows=MAX_ROWS)
    assert not marker.exists()


def test_fortran_and_big_endian_are_read_correctly() -> None:
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    for arr in (np.asfortranarray(x), x.astype(">f8"), np.asfortranarray(x.astype(">f4"))):
        np.testing.assert_array_equal(parse_npy(npy_bytes(arr), max_rows=8).embeddings, x)


# ---------------------------------------------------------------------- names
TRICKY_NAMES = [
    "",
    ".",
    "..",
    "../etc",
    "a/../../b",
    "a/b",
    "a\\b",
    "..\\..\\x",
    "/abs",
    "a%2Fb",
    "a\x00b",
    "a\nb",
    "search\n",
    "x" * 65,
    "x" * 10_000,
    "CON",
    "con",
    "nul",
    "aux",
    "com1",
    "lpt1",
    "search.",
    "search ",
    " search",
    "Search",
    "sеarch",  # Cyrillic e
    "ｓｅａｒｃｈ",  # fullwidth
    "search\u200b",
    "-lead",
    "_lead",
    "a:b",
    "~",
    "$HOME",
    "a*b",
]


@pytest.mark.parametrize("name", TRICKY_NAMES, ids=repr)
def test_check_name_refuses_path_tricks(name: str) -> None:
    lower_reserved = name in {"con", "nul", "aux", "com1", "lpt1"}
    if lower_reserved:
        # Windows reserves these names, but the service never runs on Windows paths: they
        # match the pattern and are plain folder names on POSIX (documented in serve.md)
        assert check_name(name) == name
        return
    with pytest.raises(BadStreamNameError, match="must match"):
        check_name(name)


@FAST
@given(name=st.text(max_size=80) | st.binary(max_size=20) | st.integers() | st.none())
def test_check_name_is_the_pattern(name: Any) -> None:
    ok = isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None
    if ok:
        assert check_name(name) == name
        assert "/" not in name and "\\" not in name and ".." not in name and "\x00" not in name
    else:
        with pytest.raises(BadStreamNameError):
            check_name(name)
