"""Can SURE score BM4D? Its Monte-Carlo estimate of BM4D's error on a held-out slab, for
several finite-difference steps, beside the true error (protocol v1, Colin27, one case).

    python benchmarks/bm4d_sure.py SIGMA N CROP      # e.g. 0.08 4 64

SURE needs the denoiser's divergence, which a finite difference along a draw of the noise
estimates (the probe moved from elsewhere in the volume, as the output tuning's slab score
uses it). BM4D's hard thresholding jumps, so the step matters. BM4D runs on a box round the
16-slice slab with a 12-slice margin on each side, given the noise SD that ``--method bm4d``
gets. The Rician bias taken off the data term is the truth's (an oracle), so that only the
divergence is under test. One thread.
"""

from __future__ import annotations

import sys
import time

import numpy as np

SLAB = 16
MARGIN = 12
STEPS = (1e-2, 0.1, 0.5)


def main(argv: list[str]) -> None:
    import bm4d

    from noise2average.arrays.frames import Frames
    from noise2average.arrays.noise import (difference_probe, estimate_sigma, local_sd,
                                            probe_moved, remove_anatomy, rician_bias)
    from noise2average.arrays.simulate import SimulationConfig
    from noise2average.workflows import reference_and_mask, simulate_case

    sigma, n, crop = float(argv[0]), int(argv[1]), int(argv[2])
    ref, whole_mask, img, _, _ = reference_and_mask(None, None)
    reps, truth, mask, _, _ = simulate_case(ref, whole_mask, img,
                                            SimulationConfig(sigma=sigma, reps=n, seed=0), crop)
    reps = [r.astype(np.float32) for r in reps]
    frames = Frames(n)
    frames.update(reps, mask)
    aligned = [frames.to_frame(r, k, 0) for k, r in enumerate(reps)]
    average = np.mean(aligned, axis=0).astype(np.float32)
    probe = remove_anatomy(difference_probe(aligned), average)
    sd = local_sd(probe)
    noise_sd = estimate_sigma(reps, mask) / np.sqrt(n)
    centre = crop // 2
    slab = (slice(centre - SLAB // 2, centre + SLAB // 2), slice(None), slice(None))
    box = (slice(slab[0].start - MARGIN, slab[0].stop + MARGIN), slice(None), slice(None))
    inner = (slice(MARGIN, MARGIN + SLAB), slice(None), slice(None))
    moved = probe_moved(probe, sd, 2 * SLAB + 8, 0)  # independent of the slab's own noise
    bias = rician_bias(truth, sd * np.sqrt(n))
    y, p, x, b = average[slab], moved[slab], truth[slab], bias[slab]
    print(f"sigma {sigma}, N = {n}, {crop}^3\n\n| step (noise SDs) | SURE | true error | "
          f"SURE / true | seconds |\n|---|---|---|---|---|")
    for step in STEPS:
        t0 = time.perf_counter()
        out = np.asarray(bm4d.bm4d(average[box], noise_sd), np.float32)[inner]
        moved_out = np.asarray(bm4d.bm4d(average[box] + step * moved[box], noise_sd),
                               np.float32)[inner]
        divergence = p * (moved_out - out) / step
        sure = float(np.mean((out - y + b) ** 2 + 2 * divergence) - np.mean(p ** 2))
        true = float(np.mean((out - x) ** 2))
        print(f"| {step:g} | {sure:.3e} | {true:.3e} | {sure / true:.3f} | "
              f"{time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
