#!/usr/bin/env bash
# Create the benchmark-only virtualenv `.venv-peers` with the peer libraries (see
# benchmarks/README in docs/benchmarks.md). Idempotent: a stamp file records the
# constraints it was built from; re-running with unchanged constraints does nothing.
#
# Order matters (facts in PEERS.md): the CPU torch wheel first, pinned on every pip line so no
# resolver step replaces it with a multi-GB CUDA build; then alibi-detect (which resolves to
# numpy 1.26.4), then evidently/frouros/dcor/POT. The resolved set is frozen into
# benchmarks/constraints-peers.txt, and later runs install from that file.
#
# embdrift itself goes into the same env (editable, --no-deps, plus its core deps resolved
# against numpy 1.26.4) so one process can run every method on the same arrays.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${PEERS_VENV:-$ROOT/.venv-peers}"
PY="${PYTHON:-python3}"
CONS="$ROOT/benchmarks/constraints-peers.txt"
TORCH="torch==2.13.0"
STAMP="$VENV/.peers-ok"

# The main env's constraints (numpy 2.x) must not apply here.
unset PIP_CONSTRAINT
export PIP_DISABLE_PIP_VERSION_CHECK=1
export DO_NOT_TRACK=1

if [[ -f "$STAMP" && -f "$CONS" ]] && cmp -s "$STAMP" "$CONS"; then
  echo "setup_peers: $VENV is up to date"
  exit 0
fi

[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q)
CORE_DEPS=(scikit-learn matplotlib duckdb pyarrow typer rich jinja2 datasketches threadpoolctl)

if [[ -f "$CONS" ]]; then
  # Reproduce the pinned environment.
  "${PIP[@]}" -c "$CONS" "$TORCH"
  "${PIP[@]}" -c "$CONS" "$TORCH" "alibi-detect[torch]==0.13.0"
  "${PIP[@]}" -c "$CONS" "$TORCH" "evidently==0.7.*" frouros dcor POT numpy==1.26.4
  "${PIP[@]}" -c "$CONS" "$TORCH" numpy==1.26.4 "${CORE_DEPS[@]}"
else
  # First resolution; the result is frozen below.
  "${PIP[@]}" "$TORCH"
  "${PIP[@]}" "$TORCH" "alibi-detect[torch]==0.13.0"
  "${PIP[@]}" "$TORCH" "evidently==0.7.*" frouros dcor POT numpy==1.26.4
  "${PIP[@]}" "$TORCH" numpy==1.26.4 "${CORE_DEPS[@]}"
fi
"${PIP[@]}" --no-deps -e "$ROOT"
"$VENV/bin/python" -m pip check
if [[ ! -f "$CONS" ]]; then
  {
    echo "# Resolved by benchmarks/setup_peers.sh on $(date -u +%F); peers env only."
    "$VENV/bin/python" -m pip freeze --exclude-editable | grep -v '^-e '
  } > "$CONS"
fi
cp "$CONS" "$STAMP"
echo "setup_peers: $VENV ready"
