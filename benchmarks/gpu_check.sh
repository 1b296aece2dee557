#!/usr/bin/env bash
# Run the whole course once on a CUDA GPU and keep what it shows (issue: "Run the whole course on a CUDA GPU").
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        (default OUT_DIR: gpu-check/)
#
# 1. the unit tests; 2. nbval over every lab and exercise notebook, one at a time, with its wall time;
# 3. the time-to-accuracy and training-loop benchmarks. Everything runs with DPDL_REQUIRE_CUDA=1, so
# nothing can pass by falling back to the CPU: on a machine without CUDA the script stops at once
# (exit 3) and says so. Logs go to OUT_DIR: unit.log, one <notebook>.log each, notebooks.csv
# (notebook, exit status, seconds), and the benchmarks' output. Exit status 0 only when all passed.
# The self-hosted CUDA job of .github/workflows/ci.yml and any instructor with a GPU run the same thing.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-check}"
mkdir -p "$out"
export DPDL_REQUIRE_CUDA=1 CI="${CI:-true}" DPDL_PROGRESS=0

if ! python - <<'PY' 2>"$out/device.err"; then
import torch

import dpdl

device = dpdl.device()  # raises DeviceUnavailableError when DPDL_REQUIRE_CUDA=1 and there is no GPU
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), cuDNN {torch.backends.cudnn.version()}")
print(f"device {device}: {torch.cuda.get_device_name(device)}")
PY
  echo "gpu_check: no usable CUDA device, nothing was run:" >&2
  tail -n 3 "$out/device.err" >&2
  exit 3
fi

status=0
echo "== unit tests"
python -m pytest -q -p no:cacheprovider tests >"$out/unit.log" 2>&1 || status=1
tail -n 1 "$out/unit.log"

echo "notebook,exit_status,seconds" >"$out/notebooks.csv"
for notebook in labs/lab*/lab*.ipynb exercises/lab*/lab*_exercise.ipynb; do
  name="$(basename "$notebook" .ipynb)"
  start=$(date +%s.%N)
  python -m pytest -q -p no:cacheprovider --nbval --nbval-current-env \
    --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout 600 "$notebook" >"$out/$name.log" 2>&1
  rc=$?
  seconds=$(python -c "print(round($(date +%s.%N) - $start, 1))")
  echo "$notebook,$rc,$seconds" >>"$out/notebooks.csv"
  echo "== $notebook: exit $rc in $seconds s"
  [ "$rc" -eq 0 ] || status=1
done

for bench in bench_time_to_accuracy bench_training_loops; do
  echo "== $bench"
  python "benchmarks/$bench.py" >"$out/$bench.txt" 2>&1 || status=1
  tail -n 5 "$out/$bench.txt"
done
exit "$status"
