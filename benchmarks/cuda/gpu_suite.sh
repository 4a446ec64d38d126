#!/usr/bin/env bash
# Runs tessera's GPU checks from a build folder on a machine with an NVIDIA GPU:
#   tests     the Catch2 GPU tests
#   sanitize  the same under compute-sanitizer memcheck and racecheck
#   bench     the bench_cuda_* programs (CUDA-event timing, ratios in the output)
#   torch     the PyTorch references (SDPA flash / cuDNN, cuBLAS) on the same shapes
# usage: gpu_suite.sh BUILD_DIR OUT_DIR STAGE...   (logs: OUT_DIR/<stage>.log)
set -uo pipefail
build=$1 out=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
status=0
for stage in "$@"; do
  log="$out/$stage.log"
  case $stage in
    tests)
      for t in "$build"/tests/cuda/test_cuda_*; do
        echo "== $t" | tee -a "$log"
        "$t" 2>&1 | tail -4 | tee -a "$log" || status=1
      done ;;
    sanitize)
      for tool in memcheck racecheck; do
        for t in "$build"/tests/cuda/test_cuda_*; do
          echo "== $tool $t" | tee -a "$log"
          timeout 240 compute-sanitizer --tool "$tool" --report-api-errors no --error-exitcode 9 "$t" > "$out/san_tmp.log" 2>&1
          rc=$?
          grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test cases|passed|failed" "$out/san_tmp.log" | tail -3 | tee -a "$log"
          echo "exit $rc" | tee -a "$log"
          [ "$rc" -eq 0 ] || status=1
        done
      done ;;
    bench)
      for b in "$build"/benchmarks/cuda/bench_cuda_*; do
        [ "$(basename "$b")" = bench_cuda_decode ] && continue  # needs a model file: bench_cuda_decode MODEL.gguf
        echo "== $b" | tee -a "$log"
        "$b" --benchmark_min_time=0.1 2>&1 | tee -a "$log" || status=1
      done ;;
    torch)
      python3 "$here/torch_reference.py" 2>&1 | tee -a "$log" || status=1 ;;
    *) echo "unknown stage $stage" >&2; status=2 ;;
  esac
done
exit $status
