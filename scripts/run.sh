#!/usr/bin/env bash
# Set up (idempotent) and run.  Usage:
#   bash scripts/run.sh demo [demo options]     # the main job on embedded defaults
#   bash scripts/run.sh test [pytest options]   # the test suite
#   bash scripts/run.sh cli  <command> [...]    # any lora-diffusion command
# Setup: a .venv beside this repository, the CPU build of torch 2.13.0 first where pip can
# find it (so that no multi-GB CUDA build is pulled on CPU machines), then the package with
# its dev extras. A second run reuses .venv and skips the install while pyproject.toml is
# unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ]; then
  echo "usage: bash scripts/run.sh {demo|test|cli} [args...]" >&2
  exit 2
fi

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3 python; do
    if command -v "$cand" >/dev/null 2>&1; then PY=$cand; break; fi
  done
fi
[ -n "$PY" ] || { echo "no python3 found; install Python >= 3.10" >&2; exit 2; }

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.lora-diffusion-setup
want=$(cat pyproject.toml scripts/run.sh | sha256sum | cut -c1-64)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "[setup] installing into .venv (first run, or pyproject.toml changed)"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    .venv/bin/python -m pip install -q "torch==2.13.0" 2>/dev/null \
      || echo "[setup] torch 2.13.0 not available here; pip picks torch from the package's range"
  fi
  .venv/bin/python -m pip install -q -e ".[dev]"
  echo "$want" > "$stamp"
fi

cmd=$1; shift
case "$cmd" in
  demo) exec .venv/bin/lora-diffusion demo "$@" ;;
  cli) exec .venv/bin/lora-diffusion "$@" ;;
  test)
    set +e
    .venv/bin/python -m pytest "$@"
    rc=$?
    set -e
    if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi
    exit "$rc"
    ;;
  *) echo "unknown command $cmd; use demo, test or cli" >&2; exit 2 ;;
esac
