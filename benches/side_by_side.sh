#!/bin/bash
# asna beside PyTorch on one GPU, in one run: adapter, tuning, scoring and training figures
# (f32 tuned and default, f16), per-kernel profile, then PyTorch's eager, TF32 and compiled
# timings of the same model. Every result lands in OUT_DIR as JSON.
#
#   cargo build --release && benches/side_by_side.sh OUT_DIR [TORCH_REF_DIR]
#
# TORCH_REF_DIR holds asna_torch.py and compiled_timing.py (PyTorch's side); without it only
# asna's figures are taken. ASNA overrides the binary (default target/release/asna).
set -u
out=${1:?usage: benches/side_by_side.sh OUT_DIR [TORCH_REF_DIR]}
ref=${2:-}
asna=${ASNA:-target/release/asna}
mkdir -p "$out"
export ASNA_TUNE_CACHE="$out/tune-cache.json"
step() {
    local name=$1
    shift
    echo "== $name" >&2
    local t0=$SECONDS
    "$@" > "$out/$name.json" 2> "$out/$name.err"
    echo "   exit $? after $((SECONDS - t0)) s" >&2
}
step devices "$asna" devices --json
step tune "$asna" tune --json
step bench_f32 "$asna" bench --batch 1,16,64 --iters 10 --tuning both --json
step bench_f16 "$asna" bench --score-only --batch 64 --iters 10 --precision f16 --json
step profile "$asna" bench --batch 64 --iters 3 --profile --json
if [ -n "$ref" ]; then
    step torch python3 "$ref/asna_torch.py" timing "$out/torch-timing.json"
    step torch_compiled python3 "$ref/compiled_timing.py" "$out/torch-compiled.json"
fi
