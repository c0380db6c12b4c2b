#!/usr/bin/env bash
# A/B of the hot paths before and after the metrics: the processor and ingest benchmarks run
# alternately on the source tree of REF (before) and on the working tree (after), same venv,
# same machine, interleaved. Usage: benchmarks/metrics_overhead.sh [REF] [ROUNDS]
set -euo pipefail
ref=${1:-30a81b6}
rounds=${2:-3}
base=$(mktemp -d)
trap 'rm -rf "$base"' EXIT
git archive "$ref" src | tar -x -C "$base"
py=${PYTHON:-.venv/bin/python}
run() {  # $1: label, $2: PYTHONPATH ("" for the working tree)
  echo "== $1 processor"
  PYTHONPATH=$2 $py -m benchmarks.processor --events 30000 --people 20000 --rounds 1 --skip-lookup 2>&1 | grep "round 1"
  echo "== $1 ingest"
  PYTHONPATH=$2 $py -m benchmarks.ingest --rounds 1 --seconds 3 2>&1 | grep "^| 20"
}
for i in $(seq "$rounds"); do
  run before "$base/src"
  run after ""
done
