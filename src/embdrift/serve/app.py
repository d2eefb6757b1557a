"""The HTTP service: ``create_app(config) -> FastAPI`` (a factory; no module-level state).

Routes (fixed by the metric contract): ``POST /v1/streams/{stream}/embeddings``,
``POST /v1/streams/{stream}/outcomes``, ``GET /v1/streams``, ``GET
/v1/streams/{stream}/drift``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics`` and the
OpenAPI document at ``/openapi.json``. ``GET /`` (the live page) is a router of its own.

``app.state`` holds ``registry`` (:class:`~embdrift.serve.registry.StreamRegistry`; readers use
``registry.snapshots()``), ``config``, ``auth`` (:class:`~embdrift.serve.auth.Auth`, used by
the ``require_read`` / ``require_write`` dependencies), ``prometheus`` (the
``CollectorRegistry``) and ``metrics`` (:class:`~embdrift.serve.metrics.ServeMetrics`).

Back-pressure: at most ``config.max_inflight`` write requests (ingest and outcomes) are
admitted at a time; one more is refused at once, before its body is read, with HTTP 503
``{"error": "overloaded"}`` and ``Retry-After``, and writes nothing. A stream that stays busy
longer than ``config.lock_timeout`` gives HTTP 429 with ``Retry-After``. So the work queued in
the process is bounded (``max_inflight`` bodies of at most ``max_body_bytes``) however many
clients push, and readers (``/metrics``, GET endpoints) still find a worker thread and read
the published snapshots without waiting for a stream (:mod:`embdrift.serve.snapshot`).

Every embdrift error becomes a 4xx JSON answer ``{"error": kind, "detail": message}`` (503 when
saturated, 507 when the disk refused a state write) where ``kind`` is one of the ``reason``
values of ``embdrift_rejected_batches_total`` and the message names the problem and the fix; a
rejected request changes nothing and logs nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from embdrift.errors import (
    BadStreamNameError,
    DimensionMismatchError,
    EmbdriftError,
    EmbeddingTypeError,
    InflightLimitError,
    InsufficientDataError,
    InvalidBodyError,
    InvalidEmbeddingsError,
    InvalidParameterError,
    OverloadedError,
    PayloadTooLargeError,
    StorageError,
    TimestampOrderError,
    UnauthorizedError,
    UnknownStreamError,
)
from embdrift.serve.auth import Auth, require_read, require_write
from embdrift.serve.batch import (
    NAME_PATTERN,
    check_name,
    parse_embeddings_json,
    parse_npy,
    parse_outcomes_json,
)
from embdrift.serve.config import ServeConfig
from embdrift.serve.metrics import ServeMetrics
from embdrift.serve.page import router as page_router
from embdrift.serve.registry import StreamRegistry
from embdrift.serve.sink import StoreSink
from embdrift.store import Store

__all__ = ["ERROR_STATUS", "RETRY_AFTER_SECONDS", "create_app", "error_kind", "prepare"]

log = logging.getLogger("embdrift.serve")

#: (HTTP status, error kind) per embdrift exception type; the first match (in order) wins.
ERROR_STATUS: tuple[tuple[type[Exception], int, str], ...] = (
    (UnauthorizedError, 401, "unauthorized"),
    (PayloadTooLargeError, 413, "too_large"),
    (BadStreamNameError, 400, "bad_stream_name"),
    (UnknownStreamError, 404, "unknown_stream"),
    (InflightLimitError, 503, "overloaded"),
    (OverloadedError, 429, "overloaded"),
    (StorageError, 507, "storage"),
    (DimensionMismatchError, 422, "dimension_mismatch"),
    (InvalidEmbeddingsError, 422, "invalid_embeddings"),
    (EmbeddingTypeError, 422, "invalid_embeddings"),
    (InsufficientDataError, 422, "invalid_embeddings"),
    (TimestampOrderError, 422, "invalid_body"),
    (InvalidBodyError, 400, "invalid_body"),
    (InvalidParameterError, 400, "invalid_body"),
)

_JSON = "application/json"
_NPY = "application/x-npy"
_NAME_PATTERN_TEXT = f"^{NAME_PATTERN.pattern}$"

_TIMESTAMPS = {
    "type": "array",
    "items": {"oneOf": [{"type": "number"}, {"type": "string", "format": "date-time"}]},
    "description": "Unix seconds or ISO 8601 (years 1678-2261), non-decreasing.",
}
_OUTCOME_NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"}

_INGEST_BODY = {
    "required": True,
    "content": {
        _JSON: {
            "schema": {
                "type": "object",
                "required": ["embeddings"],
                "additionalProperties": False,
                "properties": {
                    "embeddings": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "number"},
                        },
                        "description": "Rows of the batch, each of the reference's dimension"
                        " (finite, within float32).",
                    },
                    "ids": {
                        "type": "array",
                        "items": {
                            "oneOf": [{"type": "string", "maxLength": 256}, {"type": "integer"}]
                        },
                        "description": "One id per row (printable text, at most 256 chars).",
                    },
                    "timestamps": _TIMESTAMPS,
                    "outcomes": {
                        "type": "object",
                        "maxProperties": 16,
                        "propertyNames": _OUTCOME_NAME,
                        "additionalProperties": {
                            "type": "array",
                            "items": {"type": ["number", "null"]},
                        },
                        "description": "Per-row outcome values by name (null = none).",
                    },
                },
            }
        },
        _NPY: {
            "schema": {"type": "string", "format": "binary"},
            "description": "A 2-D float32/float64 array written by numpy.save (no pickle;"
            " C or Fortran order, either byte order).",
        },
    },
}

_OUTCOMES_BODY = {
    "required": True,
    "content": {
        _JSON: {
            "schema": {
                "type": "object",
                "required": ["outcomes"],
                "additionalProperties": False,
                "properties": {
                    "outcomes": {
                        "type": "object",
                        "minProperties": 1,
                        "maxProperties": 16,
                        "propertyNames": _OUTCOME_NAME,
                        "additionalProperties": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": ["number", "null"]},
                        },
                        "description": "Values by outcome name, all lists of one length.",
                    },
                    "timestamps": _TIMESTAMPS,
                },
            }
        }
    },
}

#: Seconds a client is told to wait (``Retry-After``) after a 429 or 503: an ingest holds its
#: stream for ~10-20 ms and a window test for ~50 ms at the default window and calibration
#: (d = 384), so one second later a slot is usually free again.
RETRY_AFTER_SECONDS = 1

_RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer"},
    }
}

#: Every error answer: ``{"error": kind, "detail": message}``.
_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "detail"],
    "additionalProperties": False,
    "properties": {
        "error": {"type": "string", "description": "The kind of problem (stable)."},
        "detail": {"type": "string", "description": "What was wrong and how to fix it."},
    },
}
_ERROR_TEXT = {
    400: ("Malformed body, parameter or stream name", "invalid_body"),
    401: ("Missing or wrong bearer token", "unauthorized"),
    404: ("Unknown stream", "unknown_stream"),
    413: ("Body or batch too large", "too_large"),
    415: ("Unsupported content type", "invalid_body"),
    422: ("Invalid embeddings or dimension mismatch", "invalid_embeddings"),
    429: ("Stream busy or stream limit reached (Retry-After)", "overloaded"),
    503: (
        "Not ready, or more write requests in flight than --max-inflight (nothing written;"
        " Retry-After)",
        "not_ready",
    ),
    507: ("State could not be written (disk full, read-only, I/O error)", "storage"),
}


def _document(schema: dict[str, Any], config: ServeConfig) -> None:
    """Make the generated OpenAPI document say what this service does: the error schema and
    statuses each operation can answer (FastAPI's own 422 validation answer is a 400 here),
    which operations need the token (as configured), the stream-name pattern, parameter
    ranges, the configured row cap and the rows' dimension when all references share one."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = _ERROR_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    ranges = {"limit": (1, config.history), "refresh": (0, 3600)}
    refs = [*config.references.values(), config.default_reference]
    dims = sorted({ref.dim for ref in refs if ref is not None})
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            codes: set[int] = set()
            for param in op.get("parameters", []):
                codes.add(400)
                if param["name"] == "stream" and param["in"] == "path":
                    param["schema"].update(pattern=_NAME_PATTERN_TEXT, maxLength=64)
                    codes.add(404)
                low_high = ranges.get(param["name"])
                if low_high is not None:
                    param["schema"].update(minimum=low_high[0], maximum=low_high[1])
            # the token guards writes, and reads with --protect-reads; else no security
            guarded = config.token is not None and (method != "get" or config.protect_reads)
            if op.get("security") and not guarded:
                del op["security"]
            if op.get("security"):
                codes.add(401)
            if method == "post":
                codes |= {400, 413, 415, 422, 429, 503}
                if config.state_dir is not None:  # a log write the disk refuses
                    codes.add(507)
                body = op["requestBody"]["content"][_JSON]["schema"]["properties"]
                if "embeddings" in body:
                    body["embeddings"]["maxItems"] = config.max_rows
                    if len(dims) == 1:  # every stream has this dimension
                        body["embeddings"]["items"].update(minItems=dims[0], maxItems=dims[0])
            if path == "/metrics":
                responses["200"]["content"] = {
                    "text/plain": {"schema": {"type": "string"}},
                    "application/openmetrics-text": {"schema": {"type": "string"}},
                }
            if path == "/readyz":
                codes.add(503)
            for code in sorted(codes):
                text, kind = _ERROR_TEXT[code]
                if code == 503 and method == "post":
                    kind = "overloaded"
                responses[str(code)] = {
                    "description": text,
                    "content": {
                        _JSON: {
                            "schema": {"$ref": "#/components/schemas/Error"},
                            "example": {"error": kind, "detail": "..."},
                        }
                    },
                }
                if code in (429, 503):
                    responses[str(code)]["headers"] = _RETRY_AFTER_HEADER


def error_kind(exc: Exception) -> tuple[int, str]:
    """(HTTP status, kind) of an embdrift exception (see :data:`ERROR_STATUS`)."""
    for cls, status, kind in ERROR_STATUS:
        if isinstance(exc, cls):
            return status, kind
    return 400, "invalid_body"


class _UnsupportedMediaType(InvalidBodyError):
    """A body with a content type other than JSON or .npy (HTTP 415)."""


def _error(status: int, kind: str, detail: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status in (429, 503):
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return JSONResponse({"error": kind, "detail": detail}, status_code=status, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with :class:`PayloadTooLargeError` as soon as it passes ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(
            f"The body is {int(declared)} bytes; this service accepts at most {limit}"
            " (--max-body-bytes). Send smaller batches."
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(
                f"The body passed {limit} bytes, the most this service accepts"
                " (--max-body-bytes). Send smaller batches."
            )
        chunks.append(chunk)
    return b"".join(chunks)


class _InflightGate:
    """Admits at most ``limit`` write requests at a time.

    Used only from the event loop's thread (admission and release happen in the request's
    coroutine, never in a worker thread), so a plain counter needs no lock.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one slot for the ``with`` block; :class:`InflightLimitError` when none is
        free (nothing has been read or written yet)."""
        if self._count >= self.limit:
            raise InflightLimitError(
                f"The service is already handling {self._count} write requests, its limit"
                f" (--max-inflight {self.limit}); this request was not read and nothing was"
                f" written. Retry after {RETRY_AFTER_SECONDS} s (Retry-After), or spread the"
                " load over fewer, larger batches."
            )
        self._count += 1
        try:
            yield
        finally:
            self._count -= 1


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", _JSON).split(";")[0].strip().lower()


def create_app(config: ServeConfig) -> FastAPI:
    """Build the service for ``config``; streams are recovered when the app starts (lifespan).

    Examples
    --------
    >>> import numpy as np
    >>> from fastapi.testclient import TestClient
    >>> from embdrift import Reference
    >>> from embdrift.serve import MonitorSettings, ServeConfig
    >>> ref = Reference.fit(np.random.default_rng(0).normal(size=(400, 8)), n_components=3)
    >>> app = create_app(ServeConfig(default_reference=ref,
    ...                              monitor=MonitorSettings(window=100, n_calibration=99)))
    >>> with TestClient(app) as client:
    ...     r = client.post("/v1/streams/demo/embeddings", json={"embeddings": [[0.0] * 8] * 3})
    >>> r.status_code, r.json()["accepted"]
    (200, 3)
    """
    sink = StoreSink(Store(config.store)) if config.store is not None else None
    registry = StreamRegistry(
        references=config.references,
        default_reference=config.default_reference,
        settings=config.monitor,
        state_dir=config.state_dir,
        on_window=sink,
        history=config.history,
        max_streams=config.max_streams,
        checkpoint_every=config.checkpoint_every,
        lock_timeout=config.lock_timeout,
        fsync=config.fsync,
    )
    prometheus = CollectorRegistry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await run_in_threadpool(prepare, app)
            yield
        finally:
            await run_in_threadpool(registry.close)
            if sink is not None:
                sink.close()

    app = FastAPI(
        title="embdrift serve",
        summary="Embedding drift monitoring: ingest, calibrated window tests, Prometheus.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.sink = sink
    app.state.registry = registry
    app.state.auth = Auth(config.token, protect_reads=config.protect_reads)
    app.state.prometheus = prometheus
    app.state.metrics = ServeMetrics(registry, prometheus)
    _install_error_handlers(app)
    _add_routes(app, config, registry)
    app.include_router(page_router)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _document(generate(), config)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def prepare(app: FastAPI) -> None:
    """Take the store and recover every stream (checkpoint + log replay) now; idempotent.

    The app's startup does it anyway; ``embdrift serve`` calls it before starting uvicorn so
    that a locked store or unusable state folder ends the command with its message (exit
    status 2) instead of a server traceback.
    """
    registry: StreamRegistry = app.state.registry
    if registry.ready:
        return
    sink: StoreSink | None = app.state.sink
    if sink is not None:
        sink.open()
    try:
        registry.open()
    except BaseException:
        if sink is not None:
            sink.close()
        raise
    if sink is not None:  # windows a failing store or a crash kept out of it
        for snap in registry.snapshots():
            stored = sink.backfill(snap.name, snap.history)
            if stored:
                log.warning(
                    "stream %s: stored %d windows missing from the store", snap.name, stored
                )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(EmbdriftError)
    async def embdrift_error(request: Request, exc: EmbdriftError) -> JSONResponse:
        status, kind = error_kind(exc)
        if isinstance(exc, _UnsupportedMediaType):
            status = 415
        return _error(status, kind, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, kind, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return _error(400, "invalid_body", f"The request is not valid: {problems}.")


def _add_routes(app: FastAPI, config: ServeConfig, registry: StreamRegistry) -> None:
    metrics: ServeMetrics = app.state.metrics
    write = [Depends(require_write)]
    gate = _InflightGate(config.max_inflight)
    app.state.inflight = gate

    @asynccontextmanager
    async def admitted(stream: str, request: Request) -> AsyncIterator[tuple[bytes, str]]:
        """The shape both writes share, in this order: the stream name is checked, one
        in-flight slot is taken (503 ``overloaded`` before the body is read) and held for the
        ``async with`` block, the body is read (413 past ``max_body_bytes``); the block gets
        ``(body, media type)``. An embdrift error on the way or in the block is counted in
        ``embdrift_rejected_batches_total`` under its reason and re-raised for the error
        handlers. The token (``require_write``, which counts its own refusals) is checked
        before any of this."""
        try:
            check_name(stream)
            with gate.admit():
                body = await _read_body(request, config.max_body_bytes)
                yield body, _media_type(request)
        except EmbdriftError as exc:
            registry.record_rejection(error_kind(exc)[1])
            raise

    @app.post(
        "/v1/streams/{stream}/embeddings",
        summary="Ingest a batch of embeddings (durable before the answer)",
        openapi_extra={"requestBody": _INGEST_BODY},
        tags=["ingest"],
        dependencies=write,
    )
    async def ingest(stream: str, request: Request) -> dict[str, Any]:
        """Append a batch to stream ``stream``: JSON (``embeddings``, optional ``ids``,
        ``timestamps``, per-row ``outcomes``) or an ``application/x-npy`` body. Answers after
        the batch is fsynced to the stream's write-ahead log, with the rows accepted, the
        stream's row count and the windows the batch closed."""
        t0 = time.perf_counter()
        async with admitted(stream, request) as (body, media):
            if media == _NPY:
                batch = await run_in_threadpool(parse_npy, body, max_rows=config.max_rows)
            elif media == _JSON:
                batch = await run_in_threadpool(
                    parse_embeddings_json, body, max_rows=config.max_rows
                )
            else:
                raise _UnsupportedMediaType(
                    f"Content-Type {media!r} is not accepted; send application/json or"
                    " application/x-npy (numpy.save)."
                )
            receipt = await run_in_threadpool(registry.ingest, stream, batch)
        metrics.observe_latency(stream, time.perf_counter() - t0)
        return {
            "stream": receipt.stream,
            "accepted": receipt.accepted,
            "count": receipt.count,
            "windows_closed": receipt.windows_closed,
        }

    @app.post(
        "/v1/streams/{stream}/outcomes",
        summary="Post outcome events for a stream",
        openapi_extra={"requestBody": _OUTCOMES_BODY},
        tags=["ingest"],
        dependencies=write,
    )
    async def outcomes(stream: str, request: Request) -> dict[str, Any]:
        """Record outcome values (e.g. ``{"outcomes": {"clicked": [1, 0, 1]}}``); they count
        toward the window open when they arrive and feed ``embdrift_outcome_rate``."""
        async with admitted(stream, request) as (body, media):
            if media != _JSON:
                raise _UnsupportedMediaType("Outcomes are posted as application/json.")
            events = await run_in_threadpool(parse_outcomes_json, body)
            n = await run_in_threadpool(registry.post_outcomes, stream, events)
        return {"stream": stream, "accepted": n}

    read = [Depends(require_read)]

    @app.get("/v1/streams", dependencies=read, tags=["query"], summary="Streams and verdicts")
    def list_streams() -> dict[str, Any]:
        """Every stream with its row count, alert state and latest verdict."""
        out = []
        for snap in registry.snapshots():
            item = snap.to_dict(history=False, points=False)
            latest = snap.latest
            item["drifted"] = None if latest is None else latest.window.result.drifted
            item["p_value"] = None if latest is None else latest.window.result.p_value
            item["latest"] = None if latest is None else latest.to_dict()
            out.append(item)
        return {"streams": out}

    @app.get(
        "/v1/streams/{stream}/drift",
        dependencies=read,
        tags=["query"],
        summary="Latest window results and explanation",
    )
    def drift(stream: str, limit: int = 1) -> dict[str, Any]:
        """The latest ``limit`` closed windows (each with its DriftResult dict, outcome rates
        and new-cluster share; newest last) and the explanation of the latest window."""
        if limit < 1 or limit > config.history:
            raise InvalidParameterError(
                f"'limit' must be an int in [1, {config.history}]; got {limit}."
            )
        snap = registry.snapshot(stream)
        return {
            "stream": snap.name,
            "reference_id": snap.reference_id,
            "count": snap.count,
            "alert": snap.alert,
            "windows": [w.to_dict() for w in snap.history[-limit:]],
            "explanation": snap.explanation,
        }

    @app.get("/healthz", tags=["ops"], summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="Readiness (state recovered, logs writable)")
    def readyz() -> JSONResponse:
        if not registry.ready:
            return _error(503, "not_ready", "The service is still recovering its streams.")
        broken = registry.broken_logs
        if broken:
            return _error(
                503,
                "storage",
                f"The log of stream(s) {broken} refuses every write (a failed write could not"
                " be cut back); they answer HTTP 507 until a restart, whose recovery drops the"
                " torn record. Fix the disk that holds --state-dir, then restart; reads still"
                " work.",
            )
        return JSONResponse({"status": "ready", "streams": registry.names()})

    @app.get("/metrics", dependencies=read, tags=["ops"], summary="Prometheus metrics")
    def prometheus_metrics() -> Response:
        return Response(generate_latest(app.state.prometheus), media_type=CONTENT_TYPE_LATEST)
