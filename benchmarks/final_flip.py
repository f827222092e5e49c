"""What the flip averaging of the final pass on the average is worth: the same run, the same
kept network, its output with and without the flip, both scored (protocol v1, Colin27).

    python benchmarks/final_flip.py SIGMA N CROP      # e.g. 0.05 2 96

The default pipeline flips only that pass, so a wrapped ``denoise_volume`` runs the unflipped
pass beside it. The output is an affine map of the network's normalized output
(``Norm.inverse``); it is fitted on the flipped pass (the fit's residual is printed) and brings
the unflipped pass back to the image scale.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main() -> None:
    import noise2average.nn.engine as engine
    from noise2average.arrays.metrics import score
    from noise2average.arrays.simulate import SimulationConfig
    from noise2average.config import DenoiseConfig
    from noise2average.pipeline import denoise
    from noise2average.workflows import reference_and_mask, simulate_case

    sigma, n_reps, crop = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    original = engine.denoise_volume
    passes: dict[str, np.ndarray] = {}

    def both(model, z, mask, policy, radius, block=64, flip_axis=0, progress=None):
        out = original(model, z, mask, policy, radius, block, flip_axis, progress)
        if flip_axis is not None:  # by default only the final pass on the average flips
            passes["flip"], passes["no_flip"] = out, original(model, z, mask, policy, radius,
                                                              block, None)
        return out

    engine.denoise_volume = both  # the pipeline imports it when it runs
    ref, mask, img, _, _ = reference_and_mask(None, None)
    reps, scaled, cmask, _, _ = simulate_case(ref, mask, img,
                                              SimulationConfig(sigma=sigma, reps=n_reps), crop)
    res = denoise(reps, cmask, DenoiseConfig(iterations=2, threads=1))
    zf, out = passes["flip"][0][cmask], res.output[cmask]
    a, b = np.polyfit(zf, out, 1)
    no_flip = np.where(cmask, a * passes["no_flip"][0] + b, 0).astype(np.float32)
    print(json.dumps({"case": f"sigma {sigma}, N = {n_reps}, {crop}^3 crop",
                      "selected_iteration": res.selected_iteration,
                      "flip": score(res.output, scaled, cmask),
                      "no_flip": score(no_flip, scaled, cmask),
                      "fit_residual_max": float(np.abs(a * zf + b - out).max())}))


if __name__ == "__main__":
    main()
