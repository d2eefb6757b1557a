"""schemathesis against the service's own OpenAPI document, in process (ASGI).

Every operation of ``/openapi.json`` gets schema-valid (positive) and schema-violating
(negative) cases, derandomized so CI replays the same cases. Each answer must be below 500,
carry a status the operation documents, and, when it is an error, be exactly
``{"error": kind, "detail": message}``; schemathesis' own conformance checks (status code,
content type, response schema and headers, negative data rejected) run on every answer too.
The larger campaign against a real server is ``benchmarks/hostile.py``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

from embdrift.serve import MonitorSettings, ServeConfig, create_app  # noqa: E402
from embdrift.serve.app import prepare  # noqa: E402

#: Cases per operation and generation mode (12 operation-modes: about 20 s on 2 cores).
EXAMPLES = 100
#: A rejection of schema-violating data may be any of these (413: over the row cap).
REJECTIONS = [400, 401, 404, 413, 415, 422, 429]


@pytest.fixture(scope="module")
def schema(serve_ref, tmp_path_factory) -> Iterator[Any]:
    config = ServeConfig(
        references={"search": serve_ref},
        default_reference=serve_ref,
        monitor=MonitorSettings(
            window=100, n_calibration=99, reservoir_size=100, n_frequencies=64, explain=False
        ),
        state_dir=tmp_path_factory.mktemp("schemathesis") / "state",
        max_streams=8,
        max_rows=50,
        max_body_bytes=1 << 16,
    )
    app = create_app(config)
    prepare(app)
    checks = {"negative_data_rejection": {"expected-statuses": REJECTIONS}}
    loaded = schemathesis.openapi.from_asgi(
        "/openapi.json", app, config=schemathesis.Config.from_dict({"checks": checks})
    )
    try:
        yield loaded
    finally:
        app.state.registry.close()


def operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def check_answer(operation: Any, status: int, content_type: str, body: bytes) -> None:
    documented = {int(code) for code in operation.definition.raw["responses"]}
    assert status < 500, (operation.label, status, body[:300])
    assert status in documented, (operation.label, status, sorted(documented), body[:300])
    if status >= 400:
        assert content_type.startswith("application/json"), (operation.label, content_type)
        data = json.loads(body)
        assert set(data) == {"error", "detail"}, (operation.label, data)
        assert isinstance(data["error"], str) and data["error"]
        assert isinstance(data["detail"], str) and data["detail"]


def test_openapi_covers_every_route_and_documents_errors(schema: Any) -> None:
    labels = {op.label for op in operations(schema)}
    assert labels == {
        "POST /v1/streams/{stream}/embeddings",
        "POST /v1/streams/{stream}/outcomes",
        "GET /v1/streams",
        "GET /v1/streams/{stream}/drift",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "GET /",
    }
    ingest = schema.raw_schema["paths"]["/v1/streams/{stream}/embeddings"]["post"]
    assert set(ingest["requestBody"]["content"]) == {"application/json", "application/x-npy"}
    assert {"400", "404", "413", "415", "422", "429"} <= set(ingest["responses"])
    stream = ingest["parameters"][0]["schema"]
    assert stream["pattern"] == "^[a-z0-9][a-z0-9_-]{0,63}$" and stream["maxLength"] == 64
    assert "HTTPValidationError" not in json.dumps(schema.raw_schema)


def campaign(operation: Any, mode: Any, seen: Counter[tuple[str, str, int]]) -> None:
    """EXAMPLES derandomized cases of ``operation`` in generation ``mode``."""

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call()
        seen[(operation.label, mode.value, response.status_code)] += 1
        ctype = response.headers.get("content-type", [""])  # schemathesis: name -> values
        check_answer(
            operation,
            response.status_code,
            ctype[0] if isinstance(ctype, list) else ctype,
            response.content,
        )
        case.validate_response(response, excluded_checks=[positive_data_acceptance])

    run()


def test_schemathesis_campaign(schema: Any) -> None:
    seen: Counter[tuple[str, str, int]] = Counter()
    for operation in operations(schema):
        has_input = bool(operation.path_parameters or operation.query or operation.body)
        campaign(operation, GenerationMode.POSITIVE, seen)
        if has_input:  # an operation without inputs has no schema to violate
            campaign(operation, GenerationMode.NEGATIVE, seen)
    statuses: Counter[int] = Counter()
    for (_, _, status), n in seen.items():
        statuses[status] += n
    # the campaign reached the success path and the main refusals, not only one of them
    assert statuses[200] > 0 and statuses[400] > 0 and statuses[422] > 0, statuses
    assert not any(status >= 500 for status in statuses)
    assert sum(statuses.values()) > 8 * EXAMPLES, statuses
