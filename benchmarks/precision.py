"""fp32 against bf16 autocast for one U-Net training step on this CPU, side by side.

    python benchmarks/precision.py [--threads 1] [--repeats 6]

Prints the median seconds per step (2 x 32^3 patches, Adam) of each precision, alternating
them twice so that a machine shared with other jobs slows both alike, and their ratio: what
``--precision auto`` decides from the CPU flags (``nn/device.py``), measured.
"""

import argparse
import statistics
import time

import torch

from noise2average.nn.models import build_model


def step_seconds(model, opt, x, bf16: bool, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = model(x)
        loss = ((y.float() - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])  # the first step warms the kernels up


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=6)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model("unet").to(memory_format=torch.channels_last_3d)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    x = torch.randn(2, 1, 32, 32, 32).to(memory_format=torch.channels_last_3d)
    runs = {"fp32": [], "bf16": []}
    for _ in range(2):
        for name in runs:
            runs[name].append(step_seconds(model, opt, x, name == "bf16", args.repeats))
    fp32, bf16 = (min(v) for v in runs.values())
    print(f"fp32 {fp32:.3f} s/step, bf16 {bf16:.3f} s/step, bf16/fp32 {bf16 / fp32:.2f}")


if __name__ == "__main__":
    main()
