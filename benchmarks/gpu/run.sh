#!/usr/bin/env bash
# DLCR's GPU check, one command on a machine with one CUDA GPU (about 8 minutes on an H200):
#   1. the `pytest -m gpu` tests (tests/gpu: AMP/bf16 training step, DDP over NCCL with one process,
#      fp16 inpainting vs fp32, GPU evaluation vs CPU evaluation), at most 3 minutes;
#   2. benchmarks/gpu/bench_gpu.py, writing one JSON (default benchmarks/gpu/results.json), at most 8.
#
#   benchmarks/gpu/run.sh [OUT.json] [bench_gpu.py options]     e.g. --sections masks,train
#   DLCR_GPU_SKIP_TESTS=1 benchmarks/gpu/run.sh                  the benchmark alone
#
# The environment is ./run.sh's (.venv at the repository root, created when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${DLCR_PYTHON:-.venv/bin/python}
if [ ! -x "$PY" ]; then ./run.sh setup; fi
OUT=${1:-benchmarks/gpu/results.json}
shift || true
rc=0
if [ "${DLCR_GPU_SKIP_TESTS:-0}" != "1" ]; then
  timeout "${DLCR_GPU_TESTS_TIMEOUT:-180}" "$PY" -m pytest -m gpu tests/gpu -q -p no:cacheprovider \
    --junitxml="${OUT%.json}.tests.xml" || rc=$?
  echo "[gpu/run.sh] pytest -m gpu exit status: $rc" >&2
fi
timeout "${DLCR_GPU_BENCH_TIMEOUT:-480}" "$PY" benchmarks/gpu/bench_gpu.py --out "$OUT" --budget-s 400 "$@" || rc=$?
echo "[gpu/run.sh] results: $OUT (exit status $rc)" >&2
exit "$rc"
