#!/usr/bin/env bash
# One prepared GPU session (a lent CUDA machine, about 12 minutes of work): resume or start the
# U-Net pre-training on CUDA at full size, then time `n2a denoise` end to end on a full 1 mm
# Colin27 pair on CUDA, and copy the weights, resume state and timings to $OUT.
#
# Prepare here (CPU machine), once per session:
#   scripts/get_pretrain_data.sh data/pretrain
#   mkdir -p data/colin27 && cp /usr/share/mricron/templates/ch2*.nii.gz data/colin27/
#   echo /.whl/ >> .git/info/exclude && python3 -m pip download --only-binary=:all: \
#       --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
#       --platform manylinux_2_17_x86_64 --platform any -d .whl nibabel nilearn dipy
# Then, with the device tool: run `bash scripts/gpu_session.sh` carrying data, .whl and (to
# resume) runs/pretrain_unet. Environment: MINUTES (pre-training budget, default 8), PRESET
# (default unet-wide), BATCH (default 8), PATCH (default 64).
set -euo pipefail
OUT="${OUT:-/tmp/n2a-gpu}"
mkdir -p "$OUT"
MINUTES="${MINUTES:-8}"
PRESET="${PRESET:-unet-wide}"
BATCH="${BATCH:-8}"
PATCH="${PATCH:-64}"
python3 -m pip install --quiet --no-index --find-links .whl nibabel nilearn dipy 2>&1 | tail -2
python3 -m pip install --quiet --no-deps -e . 2>&1 | tail -2
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
run=runs/pretrain_gpu
mkdir -p "$run"
resume=()
[ -f "$run/t1w-unet.safetensors.ckpt/state.json" ] && resume=(--resume)
# a time budget, not a step count: stop cleanly (the checkpoint is written every 100 steps)
timeout --signal=INT "$((MINUTES * 60))" \
    n2a pretrain -o "$run/t1w-unet.safetensors" --preset "$PRESET" --data randomized \
    --extra-data data/pretrain --steps 200000 --lr 2e-4 --batch "$BATCH" --patch "$PATCH" \
    --crop 96 --refresh 20 --multicoil 0.3 --sigma-range 0.01 0.15 --checkpoint-every 100 \
    --device cuda --seed 0 --quiet "${resume[@]}" --force 2>&1 | tail -5 || true
python3 - "$run" "$OUT" <<'EOF'
import json, shutil, sys
from pathlib import Path
run, out = Path(sys.argv[1]), Path(sys.argv[2])
ck = run / "t1w-unet.safetensors.ckpt"
state = json.loads((ck / "state.json").read_text())
print("pre-training steps", state["step"], "seconds", round(state["seconds"], 1))
shutil.copy(ck / "model.safetensors", out / "t1w-unet-gpu.safetensors")
shutil.copy(ck / "state.json", out / "state.json")
EOF
# the end-to-end time of the default command on CUDA with the weights just trained
n2a simulate -o "$OUT/case" --reference data/colin27/ch2.nii.gz --mask data/colin27/ch2bet.nii.gz \
    --sigma 0.05 --force > /dev/null
/usr/bin/time -v n2a denoise "$OUT"/case/rep-1.nii.gz "$OUT"/case/rep-2.nii.gz \
    -o "$OUT/denoised.nii.gz" --mask "$OUT"/case/mask.nii.gz --init "$OUT/t1w-unet-gpu.safetensors" \
    --device cuda --quiet --force 2> "$OUT/time.txt" || true
grep -E "Elapsed|Maximum resident" "$OUT/time.txt" || true
n2a evaluate "$OUT/denoised.nii.gz" --reference "$OUT"/case/reference.nii.gz \
    --mask "$OUT"/case/mask.nii.gz 2>&1 | tail -3 || true
rm -rf "$OUT/case"
