#!/usr/bin/env bash
# cuda/gpu_session.sh: everything a session with a GPU should run, in one call, logs kept.
#
#   bash cuda/gpu_session.sh            # from the repository root, on a machine with an sm_90 GPU
#
# Steps (each logged to $LOGS/<step>.log; LOGS = $OUT if set, else cuda/build/logs):
#   1. nvidia-smi, nvcc --version
#   2. make -C cuda all  and the ptxas resource report (registers, spills, shared memory) of both kernels
#   3. cuda/build/pwr_cuda_test            the full self-test (exit code 0 = every check passed)
#      cuda/build/pwr_cuda_fused_test      the same for the Fused Subscale WaveRNN 2x (docs/format.md §12)
#   4. cuda/build/pwr_cuda_bench           WaveRNN-896, batches 1, 2, 4, 8 (cluster auto), then cluster 8
#   5. python -m pytest tests/test_cuda.py (needs numpy, scipy, soundfile, safetensors importable)
#   6. python -m benchmarks.bench_cuda     CudaEngine vs plain PyTorch-on-GPU loops (dense-896, sparse-1024 95 %),
#                                          the issue's targets; benchmarks/results/bench_cuda.{json,md} copied to $LOGS
# A summary table comes last. Nothing here changes the GPU's settings.
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS=${OUT:-cuda/build/logs}
mkdir -p "$LOGS"
declare -A RC

step() { # step NAME COMMAND...
    local name=$1; shift
    echo "=== $name: $*"
    "$@" > "$LOGS/$name.log" 2>&1
    RC[$name]=$?
    tail -n 40 "$LOGS/$name.log"
}

step env bash -c 'nvidia-smi; nvcc --version'
step build make -C cuda -j"$(nproc)" all
step resources make -C cuda sass   # ptxas -v report in the log, SASS in cuda/build/wavernn_{persistent,fused}.sass
if [ "${RC[build]}" -eq 0 ]; then
    step test cuda/build/pwr_cuda_test
    step fused_test cuda/build/pwr_cuda_fused_test
    step bench cuda/build/pwr_cuda_bench --json "$LOGS/bench.json"
    step bench_cluster8 cuda/build/pwr_cuda_bench --cluster 8 --batches 1,4 --json "$LOGS/bench_cluster8.json"
fi
step pytest env PYTHONPATH=. python3 -m pytest tests/test_cuda.py -q -rs
step bench_py bash -c 'PYTHONPATH=. PYTHONUNBUFFERED=1 python3 -m benchmarks.bench_cuda; rc=$?;
    cp benchmarks/results/bench_cuda.json benchmarks/results/bench_cuda.md "$0"/ 2>/dev/null; exit $rc' "$LOGS"

echo
echo "=== summary (exit codes; logs in $LOGS)"
for k in env build resources test fused_test bench bench_cluster8 pytest bench_py; do
    printf "%-16s %s\n" "$k" "${RC[$k]:-not run}"
done
