#!/usr/bin/env bash
# bench/gpu.py on the lent GPU machine, in one call of the device tool (bench/README.md, "GPU"):
#
#   make gpu-wheelhouse                      # here, first: wheelhouse/ (ignored by git, about 23 MiB)
#   run(command="bash scripts/gpu_bench_device.sh", carry=["wheelhouse"], timeout_s=600)
#
# Installs the wheelhouse with --no-index (that machine has no network), then runs the whole
# table under a time budget and writes $OUT/gpu-bench.md, .json and .log. Extra arguments go to
# bench/gpu.py (e.g. --rows sizes,compile). The bench stops itself at BENCH_BUDGET_S seconds, and
# `timeout` kills it 80 s later, inside the tool's 600 s limit; each row is written as it ends.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu-bench}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu-bench.log") 2>&1

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
"$PYTHON" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "CUDA", torch.version.cuda)'

# With dependency resolution against what the machine has; if that fails (a version there
# conflicts), the wheels alone into a folder ahead of site-packages, as the device notes do it.
if ! "$PYTHON" -m pip install -q --no-index --no-cache-dir --find-links wheelhouse -r wheelhouse/requirements.txt; then
  echo "resolving install failed: installing the wheels alone into /tmp/site"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    wheelhouse/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

export PYTHONUNBUFFERED=1 LOG_LEVEL=WARNING HF_HUB_OFFLINE=1
budget=${BENCH_BUDGET_S:-440}
timeout $((budget + 80)) "$PYTHON" bench/gpu.py --budget "$budget" --out "$OUT/gpu-bench.md" "$@"
status=$?
[ $status -eq 124 ] && echo "bench/gpu.py was killed at $((budget + 80)) s: the table holds the rows it finished"
exit $status
