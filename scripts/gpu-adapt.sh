#!/usr/bin/env bash
# One adaptation run of the bundled model on a lent GPU machine, as the steps an operator sends
# (docs/MODEL.md, "GPU adaptation run"); scripts/gpu_adapt.py holds what each step does.
#   here:   bash scripts/gpu-adapt.sh pack              cut the GGUF into parts under .gpu/
#   device: bash scripts/gpu-adapt.sh stash             every call but the last (carries one part)
#   device: bash scripts/gpu-adapt.sh run               the last call: train, adapter to $OUT
#   here:   bash scripts/gpu-adapt.sh unpack FILES_AT   join the pieces (engine/weights/gpu_adapter.safetensors)
#   here:   bash scripts/gpu-adapt.sh toy [FOLDER]      every step above at toy size, on CPU
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=$(command -v python3 || command -v python); fi
fi
step=${1:-}
[ $# -gt 0 ] && shift
case "$step" in
    pack|stash|unpack) exec "$PYTHON" scripts/gpu_adapt.py "$step" "$@" ;;
    run) exec "$PYTHON" scripts/gpu_adapt.py run --out "${OUT:?the device tool sets OUT}" "$@" ;;
    toy)
        # The same steps on CPU in FOLDER: a tiny GGUF in two parts, each "call" seeing only what
        # it would carry, a run of a few steps over a few kB from each installed package.
        work=$(realpath "${1:-$(mktemp -d)}")
        mkdir -p "$work"
        "$PYTHON" scripts/gpu_adapt.py toy-gguf "$work/toy.gguf"
        "$PYTHON" scripts/gpu_adapt.py pack --gguf "$work/toy.gguf" --dir "$work/pack" --parts 2 \
            --max-chars-per-source 4000
        for call in 1 2; do
            mkdir -p "$work/call$call"
            cp "$work/pack/"{manifest.json,gguf.zip,heldout.json,prose.json.gz,part-$call} "$work/call$call/"
        done
        "$PYTHON" scripts/gpu_adapt.py stash --dir "$work/call1" --stash "$work/stash"
        OMP_NUM_THREADS=1 "$PYTHON" scripts/gpu_adapt.py run --dir "$work/call2" --stash "$work/stash" --out "$work/out" \
            --device cpu --bf16 on --minutes 1 --reserve-s 5 --max-steps 4 --seq 32 --batch 4 --rank 4 \
            --warmup 2 --eval-rows 4 --max-chars-per-source 4000
        "$PYTHON" scripts/gpu_adapt.py unpack "$work/out" --to "$work/adapter.safetensors"
        ;;
    *) sed -n '2,9p' "$0" >&2; exit 2 ;;
esac
