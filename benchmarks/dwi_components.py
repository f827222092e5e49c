"""What a diffusion shell's principal components hold: signal, noise, and what the tensor fit
sees of them (issue 20).

For each shell of a diffusion benchmark case, rotates the clean series and the noise of the
repetitions' average onto the principal components of that average
(:mod:`noise2average.arrays.components`, as ``dwi_basis='components'`` does) and prints, per
component, the signal's variance over the noise's in the mask, the noise's variance over a
DWI's, and the largest correlation of the noise between two components. Then scores the average kept
to its first K components per shell (the rest set to zero), which shows how much of the
noise the tensor fit already ignores.

    python benchmarks/dwi_components.py [--case apap|subset] [--phantom bundles|structure]
        [--crop 48] [--dirs 30] [--keep 3 6 10 15]

Prints JSON lines: one per shell, then one per K with the white-matter scores
(``bench.dwi.score``; diffusivities in 10^-3 mm^2/s).
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    from noise2average.arrays.components import principal_basis, to_components
    from noise2average.bench.dwi import add_probe_case_arguments, probe_case_from, score
    from noise2average.diffusion import volume_shells

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_probe_case_arguments(ap)
    ap.add_argument("--keep", type=int, nargs="+", default=[3, 6, 10, 15])
    args = ap.parse_args()
    case = probe_case_from(args)
    mask = case.brain
    shells = volume_shells(case.bvals, case.bvecs, case.reps[0].shape[3])
    average = np.mean(case.reps, axis=0, dtype=np.float64).astype(np.float32)
    dwi_shells = [np.flatnonzero(shells == k) for k in np.unique(shells) if k >= 0]
    bases = {}
    for k, idx in enumerate(dwi_shells):
        bases[k] = basis = principal_basis(average[..., idx], mask)
        signal = to_components(case.clean[..., idx], basis)[mask]
        noise = to_components(average[..., idx] - case.clean[..., idx], basis)[mask]
        ratio = signal.var(0) / noise.var(0)
        # independent DWIs of equal noise keep it so: every ratio 1, no correlation
        per_dwi = (average[..., idx] - case.clean[..., idx])[mask].var(0).mean()
        corr = np.corrcoef(noise.T)
        print(json.dumps({"shell": k + 1, "volumes": len(idx),
                          "signal_over_noise_variance": [round(float(r), 2) for r in ratio],
                          "noise_variance_over_a_dwis": [round(float(v / per_dwi), 2)
                                                         for v in noise.var(0)],
                          "largest_noise_correlation": round(float(
                              np.abs(corr - np.eye(len(idx))).max()), 3)}))
    for keep in [*args.keep, None]:
        kept = average.copy()
        for k, idx in enumerate(dwi_shells):
            axes = bases[k][:, :keep]
            kept[..., idx] = average[..., idx] @ axes @ axes.T
        scores, _ = score(case, kept, "reps")
        print(json.dumps({"components_kept": keep if keep is not None else "all",
                          **{key: round(v * (1e3 if key[:2] in ("MD", "AD", "RD") else 1), 4)
                             for key, v in scores.items()
                             if isinstance(v, float) and key.endswith("_wm")}}))


if __name__ == "__main__":
    main()
