"""Fine-tuning the pre-trained network on the subject at the average's noise level (issue 18).

The default's output is the network applied to the registered average of the repetitions, and
with two repetitions its held-out rule keeps the pre-trained network: Noise2Average's targets
hold half of the input's own noise. This script asks how much a network tuned for exactly that
input could gain, and whether a self-supervised objective reaches it. Each objective fine-tunes
the shipped U-Net on one protocol-v1 case (the simulation, crop and registration of
``n2a benchmark`` and ``n2a denoise``), then applies it to the registered average with all 8
flips and scores it against the truth every ``--eval-every`` steps:

- ``oracle``: the registered average towards the noise-free reference. Not available to a
  user; the ceiling of any objective that trains on this input.
- ``recorrupted``: with two repetitions r_k (own frame) and r_o (the other, registered into it),
  the input a r_k + (1 - a) r_o and the target b r_k + (1 - b) r_o with b = (a - 1) / (2a - 1),
  so that the input's noise and the target's are uncorrelated when both repetitions have the
  same noise variance (a = 1 is Noise2Noise; a = 0.75, b = -0.5 gives an input 1.12 times as
  noisy as the average).
- ``sure``: Monte-Carlo SURE on the registered average: the squared residual plus twice the
  noise-weighted divergence, estimated by a finite difference along a probe. The probe is the
  signed half difference of the registered repetitions (its covariance is that of the
  average's noise: both repetitions' noise, both resamplings), cut at a random other place
  of the brain, rescaled by the ratio of the local noise maps and given a random sign.
- ``scale``: no training; the pre-trained output blended with its input, (1 - beta) f(y) +
  beta y, scored for a few beta: what a one-number correction of the network's smoothing
  could give at best.

    python benchmarks/average_tuning.py OBJECTIVE [--sigma 0.05] [--reps 2] [--crop 96]
        [--steps 600] [--lr 1e-4] [--a 0.75] [--out rows.jsonl]

One thread, fp32. Prints (and appends to ``--out``) one JSON line per evaluation.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _pad(a: np.ndarray, patch: int) -> np.ndarray:
    """``a`` reflected by half a patch on every side, so every mask voxel centres a patch."""
    h = patch // 2
    return np.pad(a, ((h, patch - h),) * 3, mode="reflect")


def _arguments(argv) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("objective", choices=["oracle", "recorrupted", "sure", "scale"])
    ap.add_argument("--sigma", type=float, default=0.05)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--a", type=float, default=0.75, help="recorrupted: rep k's input weight")
    ap.add_argument("--eps", type=float, default=1e-2, help="sure: finite-difference step")
    ap.add_argument("--min-snr", type=float, default=0.0,
                    help="sure: score only voxels where the pre-trained estimate exceeds this "
                         "many local noise SDs of one repetition (Rician bias is small there)")
    ap.add_argument("--rician", action="store_true",
                    help="sure: subtract the Rician bias of the pre-trained estimate from the "
                         "average before it becomes SURE's data term")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="append the rows to this JSON-lines file")
    args = ap.parse_args(argv)
    if args.objective == "recorrupted" and args.reps != 2:
        ap.error("recorrupted pairs two repetitions: --reps 2")
    return args


def _registered_case(args):
    """The case as ``n2a benchmark`` simulates it, registered as ``n2a denoise`` registers it:
    (grid, truth, mask), where grid[j][k] is repetition k in repetition j's frame."""
    from noise2average.arrays.frames import Frames
    from noise2average.arrays.simulate import SimulationConfig
    from noise2average.pipeline import _register
    from noise2average.workflows import reference_and_mask, simulate_case

    ref, mask, img, _, _ = reference_and_mask(None, None)
    reps, truth, mask, like, _ = simulate_case(
        ref, mask, img, SimulationConfig(sigma=args.sigma, reps=args.reps), args.crop)
    n = len(reps)
    frames = Frames(n, zooms=tuple(float(z) for z in like.header.get_zooms()[:3]))
    _register(frames, reps, mask)
    grid = [[frames.to_frame(reps[k], k, j).astype(np.float32) for k in range(n)]
            for j in range(n)]
    return grid, truth, mask


def _training_pairs(args, grid, truth, mask, norm) -> list[tuple[np.ndarray, np.ndarray]]:
    """Padded (normalized input, normalized target) images of the objective; for ``sure``
    one pair (the average, the probe image) and the probe is cut by :func:`_sure_probe`."""
    from noise2average.arrays.noise import difference_probe, noise_map
    from noise2average.arrays.normalize import Norm

    p, n = args.patch, len(grid)
    average = np.mean(grid[0], axis=0).astype(np.float32)
    if args.objective == "oracle":
        return [(_pad(norm.forward(average), p), _pad(norm.forward(truth.astype(np.float32)), p))]
    if args.objective == "recorrupted":
        a = args.a
        b = (a - 1) / (2 * a - 1)
        pairs = []
        for k in range(2):
            x = a * grid[k][k] + (1 - a) * grid[k][1 - k]
            y = b * grid[k][k] + (1 - b) * grid[k][1 - k]
            nk = Norm.fit(x, mask)
            pairs.append((_pad(nk.forward(x), p), _pad(nk.forward(y), p)))
        return pairs
    # sure: the signed difference of the repetitions (anatomy cancels, the average's noise
    # covariance stays) and the average's local noise SD, both in the average's normalization
    probe = difference_probe(grid[0]) / norm.std
    sd = noise_map(grid[0], None) / np.sqrt(n) / norm.std
    return [(_pad(norm.forward(average), p), _pad(probe.astype(np.float32), p)),
            (None, _pad(np.maximum(sd, 1e-3).astype(np.float32), p))]


def _sure_weight_and_correction(args, estimate, grid, mask, norm):
    """SURE's voxel weights and the data term's correction (normalized units) from the
    pre-trained ``estimate``: with ``--min-snr`` only voxels brighter than that many local SDs
    of one repetition; with ``--rician`` the Rician bias the estimate would have in the
    average, which SURE (a Gaussian, zero-mean noise model) would otherwise keep."""
    from noise2average.arrays.noise import noise_map, rician_bias

    sd = noise_map(grid[0], None)
    weight = mask.copy()
    if args.min_snr > 0:
        weight &= estimate > args.min_snr * sd
    correction = np.zeros(mask.shape, np.float32)
    if args.rician:
        correction = rician_bias(estimate, sd) / np.float32(norm.std)
    return weight, correction


def _train(args, model, pairs, weight, centres, rng, evaluate, correction=None) -> None:
    """Fine-tune ``model`` with the objective for ``args.steps`` steps of one patch (with
    random flips), calling ``evaluate`` every ``args.eval_every`` steps; ``correction``
    (padded, normalized) is subtracted from SURE's data term."""
    import torch

    from noise2average.nn.losses import masked_mse, sure_loss

    p = args.patch
    sure = args.objective == "sure"
    if sure:
        pairs, (_, sd) = pairs[:1], pairs[1]

    def window(c) -> tuple[slice, ...]:
        return tuple(slice(int(i), int(i) + p) for i in c)

    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    model.train()
    t0, losses = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        x_img, y_img = pairs[int(rng.integers(len(pairs)))]
        sl = window(centres[int(rng.integers(len(centres)))])
        x, y, w = x_img[sl], y_img[sl], weight[sl]
        c = correction[sl] if correction is not None else np.zeros_like(x)
        if sure:  # the probe from elsewhere: independent of this patch's noise
            there = window(centres[int(rng.integers(len(centres)))])
            y = y_img[there] * sd[sl] / sd[there] * (1 if rng.random() < 0.5 else -1)
        for ax in range(3):
            if rng.random() < 0.5:
                x, y, w, c = np.flip(x, ax), np.flip(y, ax), np.flip(w, ax), np.flip(c, ax)
        x, y, w, c = (torch.from_numpy(np.ascontiguousarray(v))[None, None]
                      for v in (x, y, w, c))
        if sure:  # the residual against the corrected data; the divergence does not see c
            pred = model(torch.cat([x, x + args.eps * y])) + torch.cat([c, c])
            loss = sure_loss(pred, y, w, args.eps)
        else:
            loss = masked_mse(model(x), y - x, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if step % args.eval_every == 0:
            evaluate(step, loss=round(float(np.mean(losses[-100:])), 5),
                     train_seconds=round(time.perf_counter() - t0))
            model.train()


def main(argv=None) -> None:
    import torch

    from noise2average.arrays.channels import channels_first, channels_last
    from noise2average.arrays.metrics import score
    from noise2average.arrays.normalize import Norm
    from noise2average.io.weights import load_packaged
    from noise2average.nn.device import resolve_policy
    from noise2average.nn.engine import denoise_volume

    args = _arguments(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    grid, truth, mask = _registered_case(args)
    average = np.mean(grid[0], axis=0).astype(np.float32)
    policy = resolve_policy("cpu", "fp32", 1)
    model = policy.prepare(load_packaged("t1w")[0])
    norm = Norm.fit(average, mask)
    z = channels_first(norm.forward(average))
    case = {"sigma": args.sigma, "reps": len(grid), "crop": args.crop,
            "objective": args.objective}
    if args.objective == "recorrupted":
        case["a"], case["b"] = args.a, (args.a - 1) / (2 * args.a - 1)

    def emit(row: dict) -> None:
        line = json.dumps({**case, **row})
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(line + "\n")

    def denoised() -> np.ndarray:
        d = denoise_volume(model, z, mask, policy, model.config.receptive_radius, 160,
                           (0, 1, 2))
        return norm.inverse(channels_last(d, 3))

    def evaluate(step: int, out: np.ndarray | None = None, **extra) -> None:
        t0 = time.perf_counter()
        out = denoised() if out is None else out
        s = score(np.where(mask, out, 0).astype(np.float32), truth, mask)
        emit({"step": step, **extra, **{k: round(float(v), 4) for k, v in s.items()},
              "eval_seconds": round(time.perf_counter() - t0)})

    if args.objective == "scale":
        f = denoised()
        for beta in (-0.05, 0.0, 0.03, 0.06, 0.1, 0.15):
            evaluate(0, (1 - beta) * f + beta * average, beta=beta)
        return
    case.update(min_snr=args.min_snr, rician=args.rician)
    estimate = denoised()
    evaluate(0, estimate)
    weight, correction = mask, None
    if args.objective == "sure" and (args.min_snr > 0 or args.rician):
        weight, correction = _sure_weight_and_correction(args, estimate, grid, mask, norm)
        correction = _pad(correction, args.patch)
    pad = ((args.patch // 2, args.patch - args.patch // 2),) * 3
    _train(args, model, _training_pairs(args, grid, truth, mask, norm),
           np.pad(weight, pad).astype(np.float32), np.argwhere(mask), rng, evaluate, correction)


if __name__ == "__main__":
    main()
