#!/usr/bin/env bash
# One prepared GPU session (a lent CUDA machine, under 10 minutes of work): continue the T1w
# U-Net's pre-training on CUDA at full size for a fixed wall time, with the batches synthesized
# by worker processes, then time `n2a denoise` end to end on a full 1 mm Colin27 pair on CUDA,
# and leave in $OUT the weights with a compact resume state (resume/), the timings and the
# GPU's load (eight files in all).
#
# Prepare here (CPU machine), once per session:
#   scripts/get_pretrain_data.sh data/pretrain
#   mkdir -p data/colin27 && cp /usr/share/mricron/templates/ch2.nii.gz \
#       /usr/share/mricron/templates/ch2bet.nii.gz data/colin27/
#   echo /.whl/ >> .git/info/exclude && python3 -m pip download --no-deps --only-binary=:all: \
#       --python-version 3.12 --implementation cp --platform any -d .whl nibabel nilearn
# The machine's Python already has PyTorch, SciPy, scikit-learn, scikit-image, matplotlib,
# safetensors and tqdm; the package runs from src/ without installing. Then, with the device
# tool, run `bash scripts/gpu_session.sh` carrying data and .whl. Environment: MINUTES
# (training wall time, default 6), INIT (starting weights, default pretrained: the shipped
# U-Net), BATCH (default 16), PATCH (default 64), CROP (default 96), WORKERS (default: the
# CPUs less two), DEVICE (default cuda; cpu for a dry run of the script).
set -euo pipefail
OUT="${OUT:-/tmp/n2a-gpu}"
mkdir -p "$OUT"
MINUTES="${MINUTES:-6}"
INIT="${INIT:-pretrained}"
BATCH="${BATCH:-16}"
PATCH="${PATCH:-64}"
CROP="${CROP:-96}"
DEVICE="${DEVICE:-cuda}"
WORKERS="${WORKERS:-$(( $(nproc) > 3 ? $(nproc) - 2 : 1 ))}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/n2a-site .whl/*.whl
export PYTHONPATH="$PWD/src:/tmp/n2a-site" PYTHONUNBUFFERED=1
n2a() { python3 -m noise2average.cli "$@"; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  python3 -c "import torch; print('torch', torch.__version__)"
  df -h /dev/shm; nproc; } 2>&1 | tee "$OUT/machine.txt"
# worker batches travel through /dev/shm; give it room where the image keeps it small
shm_gb=$(df --output=avail -BG /dev/shm | tail -1 | tr -dc 0-9)
if [ "${shm_gb:-0}" -lt 8 ]; then mount -o remount,size=16G /dev/shm || WORKERS=0; fi
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 15 > "$OUT/gpu_use.csv" &
fi
run=runs/pretrain_gpu
rm -rf "$run"
timeout --signal=INT "$(( ${MINUTES%.*} * 60 + 120 ))" \
    python3 -m noise2average.cli pretrain -o "$run/t1w-unet-gpu.safetensors" --init "$INIT" \
    --data randomized --extra-data data/pretrain --workers "$WORKERS" --minutes "$MINUTES" \
    --steps 1000000 --lr 4e-4 --batch "$BATCH" --patch "$PATCH" --crop "$CROP" --refresh 4 \
    --pool 8 --multicoil 0 --sigma-range 0.01 0.12 --checkpoint-every 500 --device "$DEVICE" \
    --seed 0 --quiet 2>&1 | tail -5 || true
# the weights, Adam's second moments in bfloat16 and the loss history (scripts/pack_resume.py)
python3 scripts/pack_resume.py "$run/t1w-unet-gpu.safetensors.ckpt" "$OUT/resume"
# the end-to-end time of the default command on the device with the weights just trained
n2a simulate -o "$run/case" --reference data/colin27/ch2.nii.gz \
    --mask data/colin27/ch2bet.nii.gz --sigma 0.05 --force > /dev/null
/usr/bin/time -v timeout 100 python3 -m noise2average.cli denoise "$run"/case/rep-1.nii.gz \
    "$run"/case/rep-2.nii.gz -o "$run/denoised.nii.gz" --mask "$run"/case/mask.nii.gz \
    --init "$OUT/resume/model.safetensors" --device "$DEVICE" --quiet --force \
    > /dev/null 2> "$OUT/time.txt" || true
grep -E "Elapsed|Maximum resident" "$OUT/time.txt" || tail -3 "$OUT/time.txt"
n2a evaluate "$run/denoised.nii.gz" --reference "$run"/case/reference.nii.gz \
    --mask "$run"/case/mask.nii.gz 2>&1 | tail -3 | tee "$OUT/evaluate.txt" || true
cp "$run"/denoised.json "$OUT/denoised.json" 2>/dev/null || true
