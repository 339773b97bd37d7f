#!/usr/bin/env bash
# Setup + entry point for a fresh machine. Creates .venv/ at the repo root when missing, installs
# torch from this machine's wheels and the package with its extras, then runs the requested job.
#
#   ./run.sh demo [dlcr demo options]    the main job: DLCR end to end on the synthetic world
#   ./run.sh test [pytest options]       the test suite
#   ./run.sh dlcr ARGS...                any dlcr command inside the environment
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}
VENV=.venv
TORCH_SPEC=${DLCR_TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
STAMP=$VENV/.dlcr-installed

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[run.sh] creating $VENV" >&2
    "$PY" -m venv "$VENV"
  fi
  # Re-install when pyproject.toml changed since the last install.
  local want
  want=$(cat pyproject.toml run.sh | sha256sum | cut -d' ' -f1)
  if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
    echo "[run.sh] installing torch and dlcr into $VENV (first run takes a few minutes)" >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    # torch first, pinned to the wheels that lie on this machine's disk.
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install -q $TORCH_SPEC >&2
    "$VENV/bin/python" -m pip install -q -e ".[gen,dev,pose,photos,report,timm]" >&2
    # Offline real models (README "Offline real models"): mediapipe's bundled pose / person-mask
    # models and OpenAI's CLIP vocabulary. --no-deps because their declared pins would downgrade numpy
    # (mediapipe) or pull torch-side packages we do not use (open-clip-torch); their runtime needs are
    # in the `pose` extra above.
    "$VENV/bin/python" -m pip install -q --no-deps mediapipe==0.10.21 open-clip-torch==3.3.0 >&2
    echo "$want" > "$STAMP"
  fi
}

cmd=${1:-help}
shift || true
case "$cmd" in
  demo)
    setup
    exec "$VENV/bin/dlcr" demo "$@"
    ;;
  test)
    setup
    # one worker per core (at most 4); `./run.sh test -n 0` runs in this one process
    exec "$VENV/bin/python" -m pytest -n auto --maxprocesses 4 "$@"
    ;;
  dlcr)
    setup
    exec "$VENV/bin/dlcr" "$@"
    ;;
  setup)
    setup
    ;;
  *)
    sed -n '2,8p' "$0"
    exit 2
    ;;
esac
