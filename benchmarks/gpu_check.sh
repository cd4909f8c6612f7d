#!/usr/bin/env bash
# The whole GPU check in one call, for a lent GPU machine (../shared/gpu/README.md):
#
#   bash ../shared/gpu/fetch-wheels.sh                      # here, once: wheels into .whl/
#   source .whl/on-device.sh && bash benchmarks/gpu_check.sh   # there, carrying .whl
#
# 1. tests/test_cuda.py: every rule, dense and conv, grouped and alone on CUDA, and the
#    grouped convolution against each member's own;
# 2. benchmarks/grid_throughput.py --device cuda: the CRGD Table 2 dense and conv panels and
#    the quickstart grid, grouped against one run per process, with 1 and 2 workers;
# with nvidia-smi sampling utilisation and memory every second meanwhile. Everything goes
# under $OUT (default results/gpu-check). Each part has its own time limit, so the check
# ends within 10 minutes and keeps what it measured if a part runs out of time.
set -u
out=${OUT:-results/gpu-check}
mkdir -p "$out"
{
    nvidia-smi
    python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, \
torch.cuda.get_device_name(0))"
} > "$out/machine.txt" 2>&1
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 \
    > "$out/gpu-samples.csv" 2>&1 &
sampler=$!
trap 'kill $sampler 2>/dev/null' EXIT

timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py \
    > "$out/cuda-tests.log" 2>&1
echo "tests/test_cuda.py: exit $? (124: out of time)" >> "$out/summary.txt"
timeout 330 python3 benchmarks/grid_throughput.py --device cuda --panels dense,conv,quickstart \
    --runs 24 --steps 100 > "$out/grid-throughput.log" 2>&1
echo "benchmarks/grid_throughput.py: exit $? (124: out of time)" >> "$out/summary.txt"
cat "$out/summary.txt"
