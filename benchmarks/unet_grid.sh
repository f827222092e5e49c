#!/usr/bin/env bash
# Protocol v1 grid for a T1w model file: the pre-trained network alone (registered average) and
# the default n2a denoise started from it, in two streams of one thread each (one per core).
#   bash benchmarks/unet_grid.sh MODEL.safetensors OUTDIR
# BM4D and the shipped MU-Net on the same inputs: docs/benchmarks.md ("Every case at a glance",
# "The last iteration on the slab first"); the simulation is deterministic for a given seed.
set -euo pipefail
model="$1"; out="$2"
mkdir -p "$out"
M="pretrained:align=register,init=$model n2a-aligned:init=$model"
run() {  # sigma reps crop [echo]
    local name="s$1_n$2_crop$3${4:+_echo}"
    n2a benchmark --crop "$3" --sigma "$1" --reps "$2" ${4:+--echo} --threads 1 --quiet \
        --force -o "$out/$name" --methods $M > "$out/$name.log" 2>&1
}
( run 0.05 2 96; run 0.03 2 96; run 0.05 4 96 ) &
( run 0.08 2 64; run 0.03 4 64; run 0.08 4 64; run 0.05 2 64 echo ) &
wait
