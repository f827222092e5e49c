"""How a pre-trained T1w model does alone, before any fine-tuning: PSNR, mean error (bias) and
sharpness ratio of its denoised repetition 1 on a centred Colin27 crop (protocol v1, one noisy
repetition, simulated on the crop), and on the MNI152 crop for comparison.

    python benchmarks/pretrain_probe.py MODEL.safetensors [MODEL2 ...] [--crop 64] [--sigma 0.05]

A quick probe of pre-training progress (seconds per model), not the benchmark: the benchmark
simulates on the whole head and scores the registered average (`n2a benchmark`).
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def probe_case(image: np.ndarray, mask: np.ndarray, crop: int = 64, sigma: float = 0.05):
    """A centred ``crop`` of ``image`` with one protocol-v1 noisy repetition simulated on it:
    (noisy rep 1, scaled reference, mask)."""
    from noise2average.arrays.masking import centred_cube
    from noise2average.arrays.simulate import SimulationConfig, simulate

    sl = centred_cube(mask, crop)
    image, mask = image[sl], mask[sl]
    reps, ref, _ = simulate(image, mask, (1.0, 1.0, 1.0), SimulationConfig(sigma=sigma, seed=0))
    return reps[0], ref, mask


def colin27_case(crop: int = 64, sigma: float = 0.05):
    """:func:`probe_case` on Colin27 (Debian mricron-data)."""
    import nibabel as nib

    from noise2average.io.templates import colin27_paths

    ref_path, mask_path = colin27_paths()
    return probe_case(np.asarray(nib.load(str(ref_path)).dataobj, np.float32),
                      np.asarray(nib.load(str(mask_path)).dataobj) > 0, crop, sigma)


def probe(model, case, policy) -> dict:
    """PSNR, mean error and sharpness ratio of ``model``'s denoised rep 1 (no fine-tuning)."""
    from noise2average.arrays.metrics import psnr
    from noise2average.arrays.normalize import Norm
    from noise2average.nn.engine import denoise_volume

    noisy, ref, mask = case
    norm = Norm.fit(noisy, mask)
    out = denoise_volume(model, norm.forward(noisy)[None], mask, policy,
                         model.config.receptive_radius, 160, 0)
    out = norm.inverse(out[0])

    def grad(a):
        return float(np.mean(np.linalg.norm(np.gradient(a), axis=0)[mask]))

    return {"psnr": round(psnr(out, ref, mask), 2), "noisy_psnr": round(psnr(noisy, ref, mask), 2),
            "bias": round(float((out - ref)[mask].mean()), 4),
            "sharpness": round(grad(out) / grad(ref), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--sigma", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    from noise2average.io.templates import mni152
    from noise2average.io.weights import load_model
    from noise2average.nn.device import resolve_policy

    policy = resolve_policy("cpu", "auto", args.threads)
    t1, mask, _ = mni152()
    cases = {"colin27": colin27_case(args.crop, args.sigma),
             "mni152": probe_case(t1, mask, args.crop, args.sigma)}
    for name, case in cases.items():
        for path in args.models:
            model = policy.prepare(load_model(path)[0])
            print(json.dumps({"image": name, "model": path, **probe(model, case, policy)}),
                  flush=True)


if __name__ == "__main__":
    main()
