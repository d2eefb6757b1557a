"""Security of ``embdrift serve``: binding, tokens on every write route, read protection,
body and batch caps, path tricks in stream names (nothing written), and no pickle / eval
anywhere in the package."""

from __future__ import annotations

import ast
import hmac
import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Route

import embdrift
from embdrift.serve import ServeConfig, create_app
from embdrift.serve.auth import Auth
from serve_support import DIM, TRICK_PATHS, WINDOW, Server, listing, npy_bytes, pickled_npy

TOKEN = "hostile-token-0123456789abcdef"
WRONG = "hostile-token-0123456789abcdeF"  # same length, last character differs
assert len(WRONG) == len(TOKEN) and WRONG != TOKEN
#: GET routes that stay public even with --protect-reads (liveness, readiness, API docs).
PUBLIC = {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
PACKAGE = Path(embdrift.__file__).parent


def is_error(response: httpx.Response | http.client.HTTPResponse, body: bytes) -> dict:
    data = json.loads(body)
    assert set(data) == {"error", "detail"}, data
    assert isinstance(data["error"], str) and isinstance(data["detail"], str) and data["detail"]
    return data


# ---------------------------------------------------------------------- routes and tokens
def flat_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, Route]]:
    """(prefix, route) of every route, descending into included routers."""
    for route in routes:
        if isinstance(route, APIRoute | Route):
            yield prefix, route
        elif hasattr(route, "original_router"):  # FastAPI's lazily included router
            inner = prefix + route.include_context.prefix
            yield from flat_routes(route.original_router.routes, inner)
        else:
            raise AssertionError(f"a route of unknown kind {route!r}: extend this test")


def routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route of the app, with path parameters filled in."""
    out = []
    for prefix, route in flat_routes(app.routes):
        path = prefix + route.path
        for name in route.param_convertors:
            path = path.replace("{" + name + "}", "search")
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                out.append((method, path))
    return out


@pytest.fixture
def secured(serve_ref, settings, tmp_path) -> Iterator[tuple[TestClient, Path]]:
    config = ServeConfig(
        references={"search": serve_ref},
        monitor=settings,
        state_dir=tmp_path / "state",
        token=TOKEN,
    )
    with TestClient(create_app(config), raise_server_exceptions=False) as client:
        yield client, tmp_path / "state"


def valid_body() -> dict[str, Any]:
    return {"json": {"embeddings": np.full((3, DIM), 0.1).tolist()}}


def test_every_write_route_needs_the_token(secured, serve_ref) -> None:
    client, state = secured
    table = routes(client.app)
    writes = [(m, p) for m, p in table if m != "GET"]
    # the routes this test knows of; a new write route is covered automatically
    assert ("POST", "/v1/streams/search/embeddings") in writes
    assert ("POST", "/v1/streams/search/outcomes") in writes
    before = listing(state)
    for method, path in writes:
        for headers in (
            {},
            {"Authorization": f"Bearer {WRONG}"},
            {"Authorization": f"bearer {WRONG}"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": TOKEN},
            {"Authorization": f"Bearer {TOKEN[:-1]}"},
            {"X-Token": TOKEN},
        ):
            r = client.request(method, path, headers=headers, **valid_body())
            assert r.status_code == 401, (method, path, headers, r.status_code, r.text)
            assert is_error(r, r.content)["error"] == "unauthorized"
            assert r.headers["WWW-Authenticate"] == "Bearer"
    assert listing(state) == before, "a refused write changed the state folder"
    # the right token passes (the write routes work, so the 401s above were the token)
    r = client.post(
        "/v1/streams/search/embeddings",
        headers={"Authorization": f"Bearer {TOKEN}"},
        **valid_body(),
    )
    assert r.status_code == 200, r.text
    # reads stay public without --protect-reads
    for method, path in table:
        if method == "GET":
            r = client.get(path)
            assert r.status_code == 200, (path, r.status_code, r.text)


def test_protect_reads_covers_every_read_route(serve_ref, settings, tmp_path) -> None:
    config = ServeConfig(
        references={"search": serve_ref},
        monitor=settings,
        state_dir=tmp_path / "state",
        token=TOKEN,
        protect_reads=True,
    )
    with TestClient(create_app(config)) as client:
        reads = [p for m, p in routes(client.app) if m == "GET"]
        assert {"/metrics", "/", "/v1/streams", "/v1/streams/search/drift"} <= set(reads)
        for path in reads:
            if path in PUBLIC:
                assert client.get(path).status_code == 200, path
                continue
            for headers in ({}, {"Authorization": f"Bearer {WRONG}"}):
                r = client.get(path, headers=headers)
                assert r.status_code == 401, (path, headers, r.status_code)
                is_error(r, r.content)
            ok = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert ok.status_code == 200, (path, ok.status_code, ok.text)


def test_token_comparison_is_constant_time(monkeypatch) -> None:
    calls = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    auth = Auth(TOKEN)
    from fastapi.security import HTTPAuthorizationCredentials

    auth.check(HTTPAuthorizationCredentials(scheme="Bearer", credentials=TOKEN))
    with pytest.raises(embdrift.errors.UnauthorizedError):
        auth.check(HTTPAuthorizationCredentials(scheme="Bearer", credentials=WRONG))
    with pytest.raises(embdrift.errors.UnauthorizedError):
        auth.check(None)
    assert calls == [(TOKEN.encode(), TOKEN.encode()), (WRONG.encode(), TOKEN.encode())]
    # and the token is never compared with == anywhere in auth.py
    tree = ast.parse((PACKAGE / "serve" / "auth.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(
            isinstance(op, ast.Eq | ast.NotEq) for op in node.ops
        ):
            names = {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
            assert "_token" not in names and "credentials" not in names, ast.unparse(node)


def test_short_token_refused() -> None:
    with pytest.raises(embdrift.errors.UnsafeBindError, match="at least 16"):
        Auth("short")


# ---------------------------------------------------------------------- the real CLI
def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "embdrift", "serve", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in __import__("os").environ.items() if k != "EMBDRIFT_TOKEN"},
    )


def test_cli_refuses_to_bind_beyond_loopback_without_a_token(serve_ref_path) -> None:
    ref = ["--reference", str(serve_ref_path), "--port", "1"]
    for host in ("0.0.0.0", "::"):
        proc = run_cli(*ref, "--host", host)
        assert proc.returncode == 2, (host, proc.stdout, proc.stderr)
        assert "Refusing to listen" in proc.stderr + proc.stdout
        assert "--token" in proc.stderr + proc.stdout
        assert "Traceback" not in proc.stderr
    proc = run_cli(*ref, "--host", "0.0.0.0", "--token", "short")
    assert proc.returncode == 2 and "at least 16" in proc.stderr + proc.stdout


# ---------------------------------------------------------------------- real server
TRICKS = [
    "..",
    ".",
    "...",
    "..%2F..%2Fetc",
    "%2E%2E",
    "%2e%2e%2f",
    "a%2Fb",
    "a%5Cb",
    "..%5C..%5Cx",
    "a%00b",
    "%00",
    "a%0Ab",
    "search%0A",
    "x" * 65,
    "x" * 4000,
    "Search",
    "s%D0%B5arch",  # Cyrillic e
    "%EF%BD%93%EF%BD%85%EF%BD%81%EF%BD%92%EF%BD%83%EF%BD%88",  # fullwidth "search"
    "search%E2%80%8B",  # zero-width space
    "CON.txt",
    "LPT1",
    "a%3Ab",
    "%7E",
    "%24HOME",
    "a*b",
    "%FF%FE",  # not UTF-8
]


@pytest.fixture(scope="module")
def hostile_server(serve_ref_path, tmp_path_factory) -> Iterator[tuple[Server, Path]]:
    tmp = tmp_path_factory.mktemp("hostile")
    state = tmp / "state"
    args = [
        "--reference", str(serve_ref_path),
        "--reference", f"search={serve_ref_path}",
        "--window", str(WINDOW),
        "--calibration", "99",
        "--reservoir-size", "200",
        "--state-dir", str(state),
        "--log-level", "warning",
        "--no-explain",
        "--max-body-bytes", str(64 * 1024),
        "--max-rows", "50",
    ]  # fmt: skip
    server = Server(args, tmp / "log").start()
    try:
        yield server, state
    finally:
        server.stop()


def raw(server: Server, method: str, path: str, body: bytes, ctype: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        conn.putheader("Content-Type", ctype)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_path_tricks_get_a_4xx_and_write_nothing(hostile_server) -> None:
    server, state = hostile_server
    before = listing(state)
    body = json.dumps({"embeddings": np.full((2, DIM), 0.1).tolist()}).encode()
    paths = [f"/v1/streams/{name}/{tail}" for name in TRICKS for tail in ("embeddings",)]
    paths += [f"/v1/streams/{name}/outcomes" for name in TRICKS]
    paths += [f"/v1/streams/{name}/drift" for name in TRICKS]
    paths += TRICK_PATHS
    statuses = {}
    for path in paths:
        method = "GET" if path.endswith("/drift") else "POST"
        status, answer = raw(server, method, path, body, "application/json")
        assert 400 <= status < 500, (path, status, answer[:200])
        is_error(None, answer)  # type: ignore[arg-type]
        statuses[path] = status
    assert listing(state) == before, "a refused request wrote to the state folder"
    # the names the service refuses by name (not by routing) say what a name looks like
    status, answer = raw(server, "POST", "/v1/streams/../embeddings", body, "application/json")
    assert status == 400 and json.loads(answer)["error"] == "bad_stream_name"
    # and the state folder only holds the configured stream's own folder
    assert all(not p.startswith("..") for p in listing(state))
    assert set(statuses.values()) <= {400, 404, 405}


def test_body_and_batch_caps_answer_413_and_write_nothing(hostile_server) -> None:
    server, state = hostile_server
    before = listing(state)
    url = f"{server.url}/v1/streams/search/embeddings"
    too_many = np.full((51, DIM), 0.1, dtype=np.float32)
    r = httpx.post(url, json={"embeddings": too_many.tolist()})
    assert r.status_code == 413 and is_error(r, r.content)["error"] == "too_large", r.text
    r = httpx.post(url, content=npy_bytes(too_many), headers={"Content-Type": "application/x-npy"})
    assert r.status_code == 413 and "--max-rows" in r.json()["detail"]
    big = b"[" + b"0.1," * 40_000 + b"0.1]"
    r = httpx.post(url, content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "--max-body-bytes" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap counts streamed bytes
        for _ in range(100):
            yield b" " * 4096

    r = httpx.post(url, content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "--max-body-bytes" in r.json()["detail"]
    assert listing(state) == before
    # wrong content types
    for ctype in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "application/octet-stream",
        "application/x-npy; charset=utf-8; x=\u00ff",
    ):
        status, answer = raw(server, "POST", "/v1/streams/search/embeddings", b"{}", ctype)
        assert status in (400, 415, 422), (ctype, status)
        is_error(None, answer)  # type: ignore[arg-type]
    assert listing(state) == before
    assert httpx.get(f"{server.url}/readyz").status_code == 200


def test_pickled_npy_over_http_is_refused_and_never_unpickled(hostile_server, tmp_path) -> None:
    server, state = hostile_server
    marker = tmp_path / "pwned"
    body = pickled_npy(marker)
    before = listing(state)
    r = httpx.post(
        f"{server.url}/v1/streams/search/embeddings",
        content=body,
        headers={"Content-Type": "application/x-npy"},
    )
    assert r.status_code == 422 and "pickled" in r.json()["detail"]
    assert not marker.exists() and listing(state) == before


# ---------------------------------------------------------------------- no pickle, no eval
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve",
                  "joblib"}  # fmt: skip


def unsafe_calls(source: str, filename: str) -> list[str]:
    """What a reviewer greps for, found on the syntax tree (no false hits in docstrings)."""
    problems = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for mod in mods:
                if mod and mod.split(".")[0] in UNSAFE_MODULES:
                    problems.append(f"{where}: imports {mod}")
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
        if func in {"eval", "exec", "builtins.eval", "builtins.exec", "__import__"}:
            problems.append(f"{where}: calls {func}")
        if kw.get("allow_pickle") not in (None, "False"):
            problems.append(f"{where}: {func}(allow_pickle={kw['allow_pickle']})")
        if func in {"np.load", "numpy.load"} and kw.get("allow_pickle") != "False":
            problems.append(f"{where}: {func} without allow_pickle=False")
        if func.endswith("yaml.load") and "Safe" not in kw.get("Loader", ""):
            problems.append(f"{where}: yaml.load without SafeLoader")
        if func.endswith(("read_pickle", "to_pickle")):
            problems.append(f"{where}: {func}")
        if func.endswith("torch.load") and kw.get("weights_only") != "True":
            problems.append(f"{where}: torch.load without weights_only=True")
        if kw.get("shell") == "True" or func in {"os.system", "os.popen"}:
            problems.append(f"{where}: shell command {func}")
    return problems


def test_the_scanner_finds_what_it_looks_for() -> None:
    bad = (
        "import pickle\nfrom shelve import open\nimport numpy as np\nimport yaml\n"
        "np.load(f)\nnp.load(f, allow_pickle=True)\neval('1')\nexec('x=1')\n"
        "yaml.load(s)\nsubprocess.run(c, shell=True)\nimport marshal\n"
    )
    assert len(unsafe_calls(bad, "bad.py")) == 10
    ok = (
        "import numpy as np\nnp.load(f, allow_pickle=False)\nyaml.load(s, Loader=yaml.SafeLoader)\n"
    )
    assert unsafe_calls(ok, "ok.py") == []


def test_no_pickle_eval_or_unsafe_load_in_the_package() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 30
    problems = [p for f in files for p in unsafe_calls(f.read_text(), str(f.relative_to(PACKAGE)))]
    assert problems == []
    # and the plain-text grep a reviewer would run (comments and docstrings may say "pickle")
    for f in files:
        text = f.read_text()
        assert "allow_pickle=True" not in text, f
        assert "pickle.load" not in text and "pickle.dump" not in text, f
