"""Hostile input against a real ``embdrift serve``: schemathesis and parser fuzzing at scale.

A real ``embdrift serve`` (uvicorn subprocess on 127.0.0.1, with a token, small caps) gets:

1. **schemathesis** over its own ``/openapi.json``: every operation, schema-valid
   (positive) and schema-violating (negative) cases, with the token. Each answer must be
   below 500, carry a status the operation documents and, when an error, be exactly
   ``{"error": kind, "detail": message}``; schemathesis' conformance checks run on every
   answer (all but ``positive_data_acceptance``: the schema cannot say that ids, timestamps
   and outcomes have one entry per row or that timestamps must not go back).
2. **Hostile bodies, names and headers**, generated from a seeded ``numpy`` generator, per
   category: random bytes, random JSON documents, forged ``.npy`` headers (dtypes, shapes up
   to 2^64, Fortran order, byte order), truncated ``.npy`` bodies, pickled ``.npy`` payloads
   that would create a file if unpickled, deep nesting (to 10^6 levels), NaN/inf/huge
   numbers, non-UTF-8 text, duplicate keys, wrong content types, oversized bodies and
   batches, stream names with path tricks, and every route without or with a wrong token.

For every request the state folder is listed before and after: a refused request (any
4xx) must leave it unchanged. The run fails (exit status 1) on any 5xx, any error answer
of another shape, any file written by a refused request or any unpickled payload.

Run: ``python benchmarks/hostile.py`` (``--quick`` for a short run); it writes the
``hostile`` section of ``benchmarks/RELIABILITY.md``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from _reliability import machine_line, write_section  # noqa: E402

from embdrift import Reference  # noqa: E402
from embdrift.synthetic import World  # noqa: E402
from serve_support import (  # noqa: E402
    TRICK_PATHS,
    free_port,
    listing,
    npy_body,
    npy_bytes,
    pickled_npy,
)

__all__ = ["main", "run"]

DIM = 16
TOKEN = "hostile-bench-token-0123456789abcdef"
WRONG = TOKEN[:-1] + ("x" if TOKEN[-1] != "x" else "y")
MAX_ROWS = 200
MAX_BODY = 256 * 1024
NPY = "application/x-npy"
JSON = "application/json"


# ---------------------------------------------------------------------- the server
@dataclass
class Server:
    """``embdrift serve`` in a subprocess, with the state folder it writes to."""

    folder: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def state(self) -> Path:
        return self.folder / "state"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self, ref: Path) -> list[str]:
        return [
            "--reference", str(ref),
            "--reference", f"search={ref}",
            "--window", "200",
            "--calibration", "99",
            "--reservoir-size", "200",
            "--no-explain",
            "--state-dir", str(self.state),
            "--token", TOKEN,
            "--max-rows", str(MAX_ROWS),
            "--max-body-bytes", str(MAX_BODY),
            "--max-streams", "32",
            "--log-level", "warning",
            "--port", str(self.port),
        ]  # fmt: skip

    def start(self, ref: Path) -> None:
        cmd = [sys.executable, "-m", "embdrift", "serve", *self.args(ref)]
        env = {k: v for k, v in os.environ.items() if k != "EMBDRIFT_TOKEN"}
        with open(self.folder / "server.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.folder / "server.log").read_text())
            try:
                status, _, _ = request(self, "GET", "/readyz")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the server did not become ready in 120 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)


def request(
    server: Server,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, bytes]:
    """One raw HTTP request (http.client sends the path exactly as given)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.getheader("content-type", ""), resp.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------- tallies
@dataclass
class Tally:
    """What one category of cases met."""

    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: int = 0
    bad_shape: int = 0
    writes_by_refusals: int = 0
    problems: list[str] = field(default_factory=list)

    def record(self, label: str, status: int, ctype: str, body: bytes, wrote: bool) -> None:
        self.cases += 1
        self.statuses[status] += 1
        if status >= 500:
            self.server_errors += 1
            self._note(f"{label}: {status} {body[:200]!r}")
        if status >= 400:
            try:
                data = json.loads(body)
                ok = (
                    ctype.startswith(JSON)
                    and isinstance(data, dict)
                    and set(data) == {"error", "detail"}
                    and all(isinstance(v, str) and v for v in data.values())
                )
            except ValueError:
                ok = False
            if not ok:
                self.bad_shape += 1
                self._note(f"{label}: error answer of another shape {body[:200]!r}")
            if wrote:
                self.writes_by_refusals += 1
                self._note(f"{label}: refused with {status} but wrote to the state folder")

    def _note(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)


def send(
    server: Server,
    tally: Tally,
    method: str,
    path: str,
    body: bytes | None = None,
    ctype: str | None = JSON,
    *,
    token: str | None = TOKEN,
) -> int:
    headers = {} if ctype is None else {"Content-Type": ctype}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    before = listing(server.state)
    status, answer_type, answer = request(server, method, path, body, headers)
    wrote = status >= 400 and listing(server.state) != before
    tally.record(f"{method} {path[:80]}", status, answer_type, answer, wrote)
    return status


# ---------------------------------------------------------------------- generators
def json_value(rng: np.random.Generator, depth: int = 0) -> Any:
    kind = rng.integers(0, 9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return bool(rng.integers(2))
    if kind == 2:
        return int(rng.choice([0, -1, 2**31, 2**63, 10**40, -(10**300)]))
    if kind == 3:
        return float(rng.choice([0.5, -1e300, 1e39, 3.5e38, float("nan"), float("inf"), 1e-320]))
    if kind == 4:
        return "".join(chr(int(c)) for c in rng.integers(0, 0x2FFF, size=rng.integers(0, 12)))
    if kind == 5:
        return float(rng.normal())
    if kind == 6:
        return [json_value(rng, depth + 1) for _ in range(rng.integers(0, 6))]
    if kind == 7:
        return [[float(v) for v in rng.normal(size=rng.integers(0, 20))] for _ in range(3)]
    keys = ["embeddings", "ids", "timestamps", "outcomes", "x", "", "é"]
    return {str(rng.choice(keys)): json_value(rng, depth + 1) for _ in range(rng.integers(0, 5))}


def ingest_document(rng: np.random.Generator) -> dict[str, Any]:
    m = int(rng.integers(0, 6))
    d = int(rng.choice([DIM, DIM, DIM - 1, 0, 1, 3 * DIM]))
    rows = rng.normal(size=(m, d)).tolist()
    for _ in range(int(rng.integers(0, 3))):
        if m and d:
            rows[rng.integers(m)][rng.integers(d)] = json_value(rng, 3)
    doc: dict[str, Any] = {"embeddings": rows}
    if rng.random() < 0.5:
        doc["ids"] = [json_value(rng, 4) if rng.random() < 0.3 else f"id{i}" for i in range(m)]
    if rng.random() < 0.5:
        stamps = [
            [1.7e9 + i for i in range(m)],
            [float(rng.normal() * 1e12) for _ in range(m)],
            ["2026-01-01T00:00:00Z"] * m,
            ["99999-01-01"] * m,
            [json_value(rng, 4) for _ in range(m)],
        ]
        doc["timestamps"] = stamps[int(rng.integers(len(stamps)))]
    if rng.random() < 0.5:
        names = ["clicked", "Bad Name", "../x", "a" * 70, "ok_2"]
        doc["outcomes"] = {
            str(rng.choice(names)): [json_value(rng, 4) for _ in range(m)]
            for _ in range(rng.integers(0, 4))
        }
    return doc


def forged_npy(rng: np.random.Generator) -> bytes:
    descr = rng.choice(["<f4", ">f4", "<f8", ">f8", "<f2", "<c8", "<i8", "|u1", "|O", "<U4", "zz"])
    dims = [DIM, 1, 0, -1, 10**12, 2**63, 2**64 + 1, 3]
    shape: Any = tuple(int(rng.choice(dims)) for _ in range(rng.integers(0, 4)))
    if rng.random() < 0.1:
        shape = rng.choice(["'x'", "(True, 1)", "(1.5, 2)"])
    fortran = rng.choice(["True", "False", "0", "'yes'"])
    header = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}"
    payload = rng.bytes(int(rng.choice([0, 4, 64, DIM * 4 * 3, 4096])))
    version = (1, 0) if rng.random() < 0.8 else (2, 0)
    return npy_body(header, payload, version)


TRICK_NAMES = [
    "..", ".", "...", "..%2F..%2Fetc", "%2E%2E", "%2e%2e%2f", "a%2Fb", "a%5Cb", "..%5C..%5Cx",
    "a%00b", "%00", "a%0Ab", "search%0A", "x" * 65, "x" * 4000, "Search", "s%D0%B5arch",
    "%EF%BD%93%EF%BD%85%EF%BD%81%EF%BD%92%EF%BD%83%EF%BD%88", "search%E2%80%8B", "CON.txt",
    "LPT1", "a%3Ab", "%7E", "%24HOME", "a*b", "%FF%FE", "-x", "_x", "a.b", "a%20b",
]  # fmt: skip


def random_name(rng: np.random.Generator) -> str:
    alphabet = "abcXYZ09_-./\\%:*?<>|\"' \t\x00\x7féßŁ\u200bａ\ud7ff\ufeff"
    n = int(rng.integers(1, 80))
    text = "".join(str(rng.choice(list(alphabet))) for _ in range(n))
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


# ---------------------------------------------------------------------- categories
def hostile_categories(
    server: Server, rng: np.random.Generator, n: int, folder: Path
) -> dict[str, Tally]:
    ingest = "/v1/streams/search/embeddings"
    outcomes = "/v1/streams/search/outcomes"
    out: dict[str, Tally] = {}

    def t(name: str) -> Tally:
        return out.setdefault(name, Tally())

    def random_bytes(i: int) -> None:
        body = rng.bytes(int(rng.integers(0, 4096)))
        ctype = NPY if i % 2 else JSON
        send(server, t("random bytes (JSON and .npy)"), "POST", ingest, body, ctype)
        if i % 4 == 0:
            send(server, t("random bytes (JSON and .npy)"), "POST", outcomes, body, JSON)

    def random_json(i: int) -> None:
        doc = json_value(rng) if i % 3 == 0 else ingest_document(rng)
        body = json.dumps(doc, allow_nan=True).encode()
        send(server, t("JSON documents (types, NaN/inf, huge numbers)"), "POST", ingest, body)
        if i % 3 == 1:
            doc = {"outcomes": json_value(rng, 1), "timestamps": json_value(rng, 3)}
            body = json.dumps(doc, allow_nan=True).encode()
            send(server, t("JSON documents (types, NaN/inf, huge numbers)"), "POST", outcomes, body)

    def npy_headers(i: int) -> None:
        send(server, t(".npy forged headers (dtype, shape to 2^64, order)"), "POST", ingest,
             forged_npy(rng), NPY)  # fmt: skip

    def npy_valid_or_cut(i: int) -> None:
        rows = int(rng.integers(1, 8))
        x = rng.normal(size=(rows, DIM)) * float(rng.choice([1.0, 1e30, 1e39]))
        if rng.random() < 0.2:
            x[0, 0] = rng.choice([np.nan, np.inf])
        with np.errstate(over="ignore", invalid="ignore"):  # 1e39 as float32 is inf
            arr = x.astype(str(rng.choice(["<f4", ">f4", "<f8", ">f8"])), copy=False)
        if rng.random() < 0.5:
            arr = np.asfortranarray(arr)
        body = npy_bytes(arr)
        if rng.random() < 0.6:
            body = body[: int(rng.integers(0, len(body)))]
        send(server, t(".npy valid, truncated, byte orders, Fortran"), "POST", ingest, body, NPY)

    marker = folder / "pwned"

    def pickles(i: int) -> None:
        body = pickled_npy(marker, cols=DIM)
        send(server, t(".npy pickled object payloads"), "POST", ingest, body, NPY)

    def deep(i: int) -> None:
        depth = int(rng.choice([1_000, 10_000, 100_000, 1_000_000]))
        opener = [b"[", b'{"a":', b'{"embeddings":['][int(rng.integers(3))]
        body = opener * depth
        if rng.random() < 0.5:
            body += b"]" * depth
        target = ingest if i % 2 else outcomes
        send(server, t("deep nesting (10^3 to 10^6 levels)"), "POST", target, body)

    def text(i: int) -> None:
        raw = rng.bytes(int(rng.integers(1, 64)))
        choices = [
            b'{"embeddings": [[1.0]], "ids": ["' + raw + b'"]}',
            raw + b'{"embeddings": [[0.1]]}',
            '{"embeddings": [[0.5]]}'.encode(str(rng.choice(["utf-16", "utf-32", "latin1"]))),
            b'{"embeddings": [[0.1]], "embeddings": [[0.2]]}',
            b'{"embeddings": [[0.1]], "ids": ["\\ud800"]}',
            b'{"embeddings": [[0.1]], "ids": ["a\\u0000b"]}',
        ]
        body = choices[int(rng.integers(len(choices)))]
        send(server, t("non-UTF-8, surrogates, NUL, duplicate keys"), "POST", ingest, body)

    def ctypes(i: int) -> None:
        ctype = rng.choice(
            [
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
                "application/octet-stream",
                "application/x-npy; charset=utf-8",
                "application/json; charset=latin1",
                "APPLICATION/JSON",
                "",
                "\u00ff/x",
            ]
        )
        body = json.dumps({"embeddings": rng.normal(size=(2, DIM)).tolist()}).encode()
        target = ingest if i % 2 else outcomes
        send(server, t("content types"), "POST", target, body, str(ctype) or None)

    def caps(i: int) -> None:
        kind = i % 3
        if kind == 0:
            body = npy_bytes(rng.normal(size=(MAX_ROWS + 1 + i, DIM)).astype(np.float32))
            send(server, t("body and batch caps"), "POST", ingest, body, NPY)
        elif kind == 1:
            body = json.dumps({"embeddings": [[0.1] * DIM] * (MAX_ROWS + 1)}).encode()
            send(server, t("body and batch caps"), "POST", ingest, body)
        else:
            body = b"[" + b"0.1," * (MAX_BODY // 4) + b"0.1]"
            send(server, t("body and batch caps"), "POST", ingest, body)

    names: list[str] = [*TRICK_NAMES]

    def path_tricks(i: int) -> None:
        name = names[i] if i < len(names) else random_name(rng)
        body = json.dumps({"embeddings": rng.normal(size=(2, DIM)).tolist()}).encode()
        tail = ["embeddings", "outcomes", "drift"][i % 3]
        method = "GET" if tail == "drift" else "POST"
        send(server, t("stream names with path tricks"), method, f"/v1/streams/{name}/{tail}",
             body if method == "POST" else None)  # fmt: skip
        if i < len(TRICK_PATHS):
            send(server, t("stream names with path tricks"), "POST", TRICK_PATHS[i], body)

    routes = [
        ("POST", ingest),
        ("POST", outcomes),
        ("POST", "/v1/streams/fresh/embeddings"),
    ]

    def auth(i: int) -> None:
        method, path = routes[i % len(routes)]
        body = json.dumps({"embeddings": rng.normal(size=(2, DIM)).tolist()}).encode()
        token = [None, WRONG, TOKEN[:-1], TOKEN + "x", "", TOKEN.upper()][i % 6]
        send(server, t("writes without / with a wrong token"), method, path, body, token=token)

    plan: list[tuple[Callable[[int], None], int]] = [
        (random_bytes, n),
        (random_json, n),
        (npy_headers, n),
        (npy_valid_or_cut, n),
        (pickles, max(n // 20, 5)),
        (deep, max(n // 10, 20)),
        (text, n // 2),
        (ctypes, n // 4),
        (caps, max(n // 50, 6)),
        (path_tricks, max(n // 2, len(TRICK_NAMES))),
        (auth, max(n // 4, 18)),
    ]
    for make, count in plan:
        for i in range(count):
            make(i)
    if marker.exists():
        t(".npy pickled object payloads").problems.append("A PICKLE WAS UNPICKLED")
        t(".npy pickled object payloads").server_errors += 1
    return out


# ---------------------------------------------------------------------- schemathesis
def schemathesis_campaign(
    server: Server, examples: int, seed: int
) -> tuple[dict[str, Tally], list[str]]:
    import schemathesis
    from schemathesis import GenerationMode

    checks = {"negative_data_rejection": {"expected-statuses": [400, 401, 404, 413, 415, 422, 429]}}
    schema = schemathesis.openapi.from_url(
        f"{server.url}/openapi.json", config=schemathesis.Config.from_dict({"checks": checks})
    )
    out: dict[str, Tally] = {}
    labels = []
    for result in schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)
        documented = {int(c) for c in operation.definition.raw["responses"]}
        has_input = bool(operation.path_parameters or operation.query or operation.body)
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if has_input else [])
        for mode in modes:
            tally = out.setdefault(f"{operation.label} ({mode.value})", Tally())
            strategy = operation.as_strategy(generation_mode=mode)
            _campaign(server, strategy, tally, documented, examples, seed)
    return out, labels


def _campaign(
    server: Server, strategy: Any, tally: Tally, documented: set[int], examples: int, seed: int
) -> None:
    """``examples`` seeded schemathesis cases from ``strategy``, each checked and tallied."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    auth = {"Authorization": f"Bearer {TOKEN}"}

    @hypothesis_seed(seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        before = listing(server.state)
        response = case.call(headers=auth, timeout=120)
        wrote = response.status_code >= 400 and listing(server.state) != before
        ctype = response.headers.get("content-type", [""])  # schemathesis: name -> values
        ctype = ctype[0] if isinstance(ctype, list) else ctype
        tally.record(case.operation.label, response.status_code, ctype, response.content, wrote)
        if response.status_code not in documented:
            tally.bad_shape += 1
            tally._note(f"undocumented status {response.status_code}")
        try:
            case.validate_response(response, excluded_checks=[positive_data_acceptance])
        except BaseException as exc:  # noqa: BLE001 - schemathesis' FailureGroup
            tally.bad_shape += 1
            tally._note(f"schemathesis check: {str(exc)[:300]}")

    run()


# ---------------------------------------------------------------------- report
def _statuses(counter: Counter[int]) -> str:
    return ", ".join(f"{s}: {n}" for s, n in sorted(counter.items()))


def markdown(
    command: str,
    labels: list[str],
    schema_tallies: dict[str, Tally],
    hostile: dict[str, Tally],
    seconds: float,
) -> str:
    lines = [
        "## hostile",
        "",
        machine_line(),
        "",
        f"Command: `{command}` ({seconds:.0f} s). A real `embdrift serve` on 127.0.0.1 with a"
        f" token, `--max-rows {MAX_ROWS}`, `--max-body-bytes {MAX_BODY}`; the state folder is"
        " listed before and after every request.",
        "",
        f"OpenAPI operations covered ({len(labels)}): " + ", ".join(f"`{x}`" for x in labels),
        "",
        "| category | cases | statuses seen | 5xx | other error shape or check failure"
        " | files written by refused requests |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    every = {**{f"schemathesis · {k}": v for k, v in schema_tallies.items()}, **hostile}
    for name, tally in every.items():
        lines.append(
            f"| {name} | {tally.cases} | {_statuses(tally.statuses)} | {tally.server_errors}"
            f" | {tally.bad_shape} | {tally.writes_by_refusals} |"
        )
    total = Tally()
    for tally in every.values():
        total.cases += tally.cases
        total.statuses.update(tally.statuses)
        total.server_errors += tally.server_errors
        total.bad_shape += tally.bad_shape
        total.writes_by_refusals += tally.writes_by_refusals
    lines.append(
        f"| **all** | **{total.cases}** | {_statuses(total.statuses)} |"
        f" **{total.server_errors}** | **{total.bad_shape}** | **{total.writes_by_refusals}** |"
    )
    problems = [p for t in every.values() for p in t.problems]
    lines += ["", "Problems found: " + ("none." if not problems else "")]
    lines += [f"- {p}" for p in problems[:30]]
    return "\n".join(lines) + "\n"


def run(*, examples: int, cases: int, seed: int, write: bool, command: str) -> int:
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    world = World.make(dim=DIM, n_clusters=4, rank=4, seed=seed)
    x, _ = world.sample(800, weights=np.ones(4), seed=seed + 1)
    with tempfile.TemporaryDirectory(prefix="embdrift-hostile-") as tmp:
        folder = Path(tmp)
        ref = Reference.fit(x, seed=seed, n_components=4).save(folder / "ref.npz")
        server = Server(folder)
        server.start(ref)
        try:
            schema_tallies, labels = schemathesis_campaign(server, examples, seed)
            hostile = hostile_categories(server, rng, cases, folder)
            alive = request(server, "GET", "/readyz")[0] == 200
        finally:
            server.stop()
    seconds = time.perf_counter() - t0
    text = markdown(command, labels, schema_tallies, hostile, seconds)
    print(text)
    if write:
        print(f"wrote {write_section('hostile', text)}")
    tallies = [*schema_tallies.values(), *hostile.values()]
    failed = any(t.server_errors or t.bad_shape or t.writes_by_refusals for t in tallies)
    if not alive:
        print("the server was not ready after the run", file=sys.stderr)
    return 1 if failed or not alive else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/hostile.py",
        description="schemathesis over /openapi.json and hostile bodies, names and headers"
        " against a real 'embdrift serve' on 127.0.0.1; writes the 'hostile' section of"
        " benchmarks/RELIABILITY.md. Exit status 1 on any 5xx, error answer of another shape"
        " or file written by a refused request.",
    )
    parser.add_argument(
        "--examples", type=int, default=500, help="schemathesis cases per operation and mode"
    )
    parser.add_argument("--cases", type=int, default=2000, help="hostile cases per main category")
    parser.add_argument("--seed", type=int, default=0, help="seed of every generator")
    parser.add_argument("--quick", action="store_true", help="50 examples, 100 cases")
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave RELIABILITY.md alone"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.examples, args.cases = 50, 100
    command = "python benchmarks/hostile.py " + " ".join(argv if argv is not None else sys.argv[1:])
    return run(
        examples=args.examples,
        cases=args.cases,
        seed=args.seed,
        write=not args.no_write,
        command=command.strip(),
    )


if __name__ == "__main__":
    raise SystemExit(main())
