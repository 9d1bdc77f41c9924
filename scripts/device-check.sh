#!/usr/bin/env bash
# The prepared GPU run (docs/PERFORMANCE.md, "GPU run"): the GPU-marked tests, then engine.tools.speed
# on a random LLaDA-8B-shaped model in bfloat16 (reference, fast, compiled, an AR peer; batch 1/8/32).
#   device:  bash scripts/device-check.sh            one call of the device tool (<= 8 min), results in $OUT
#   here:    bash scripts/device-check.sh --dry-run  every step at toy size on CPU (OUT: a folder, else a temp one)
# Needs only what the GPU machine has (torch, transformers, tokenizers, safetensors, pytest).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=$(command -v python3 || command -v python); fi
fi
export PYTHONUNBUFFERED=1
case "${1:-}" in
    --dry-run)
        out=${OUT:-$(mktemp -d)}
        speed=(--shape toy --device cpu --tokens 128 --span 8 --batches 1,2 --compile-batches 1 --ar-compile
               --repeats 1 --hbm-tbps 0.02 --peak-tflops 0.1 --budget-s 300) ;;
    "")
        out=${OUT:?the device tool sets OUT; on CPU use --dry-run}
        # rows start until 270 s into the benchmark; a compile row started then may take 2 more minutes
        speed=(--shape llada-8b --device cuda --batches 1,8,32 --compile default --ar-compile --budget-s 270) ;;
    *) sed -n '2,6p' "$0" >&2; exit 2 ;;
esac
mkdir -p "$out"
{
    nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv 2>/dev/null
    "$PYTHON" -c "import torch, transformers; print('torch', torch.__version__, '| transformers', \
transformers.__version__, '| cuda', torch.cuda.is_available())"
} 2>&1 | tee "$out/env.txt"
timeout 180 "$PYTHON" -m pytest tests/engine/test_gpu.py \
    tests/engine/test_tensor_parallel.py::test_tensor_parallel_logits_equal_one_process_on_nccl -q -p no:cacheprovider 2>&1 | tee "$out/tests.log"
tests=${PIPESTATUS[0]}
"$PYTHON" -m engine.tools.speed "${speed[@]}" --dtype bfloat16 --out "$out" 2>&1 | tee "$out/speed.log"
bench=${PIPESTATUS[0]}
echo "device-check: gpu tests exit $tests, speed exit $bench; results in $out"
[ "$tests" = 0 ] && [ "$bench" = 0 ]
