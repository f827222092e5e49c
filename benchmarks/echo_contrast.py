"""How much of repetition 1's difference from the average a contrast model explains, on every
case of protocol v1 (the threshold of ``output_contrast='auto'``, ``pipeline.CONTRAST_SHARE``).

Simulates each case as ``n2a benchmark`` does (Colin27, seed 0, the centred crop), takes the
average smoothed by a Gaussian of one voxel as the estimate (no network: the share depends
little on the estimate) and prints, per case, the share
(:func:`noise2average.arrays.noise.contrast_explained`) and the estimate's PSNR against the
reference before and after the explained part is added.

    python benchmarks/echo_contrast.py [--reference ch2.nii.gz --mask ch2bet.nii.gz]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

CASES = [(0.03, 2, 96, False), (0.03, 4, 64, False), (0.05, 2, 96, False),
         (0.05, 4, 96, False), (0.08, 2, 64, False), (0.08, 4, 64, False),
         (0.05, 2, 64, True)]


def main() -> None:
    import nibabel as nib
    from scipy import ndimage

    from noise2average.arrays.noise import contrast_explained
    from noise2average.arrays.simulate import SimulationConfig
    from noise2average.workflows import simulate_case

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", default="/usr/share/mricron/templates/ch2.nii.gz")
    ap.add_argument("--mask", default="/usr/share/mricron/templates/ch2bet.nii.gz")
    args = ap.parse_args()
    img = nib.load(args.reference)
    ref = img.get_fdata().astype(np.float32)
    brain = nib.load(args.mask).get_fdata() > 0
    for sigma, n, crop, echo in CASES:
        config = SimulationConfig(sigma=sigma, reps=n, echo=echo, seed=0)
        reps, scaled, mask, _, _ = simulate_case(ref, brain, img, config, crop)
        average = np.mean(reps, axis=0)
        estimate = ndimage.gaussian_filter(average, 1.0)
        explained, share = contrast_explained(reps[0] - average, estimate, mask)

        def psnr(x: np.ndarray) -> float:
            return round(float(10 * np.log10(1 / np.mean((x - scaled)[mask] ** 2))), 2)

        print(json.dumps({"sigma": sigma, "reps": n, "crop": crop, "echo": echo,
                          "share": round(share, 3), "psnr_estimate": psnr(estimate),
                          "psnr_with_explained": psnr(estimate + explained)}), flush=True)


if __name__ == "__main__":
    main()
