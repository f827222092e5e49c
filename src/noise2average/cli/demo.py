"""``n2a demo``."""

from __future__ import annotations

from .common import add_runtime


def add(sub) -> None:
    m = sub.add_parser("demo", help="simulate 2 noisy repetitions of the MNI152 template, denoise, score")
    m.add_argument("-o", "--output", default="demo-output", help="output folder (default demo-output)")
    m.add_argument("--steps", type=int, default=60,
                   help="optimizer steps per iteration (default 60: a demo, not a benchmark)")
    m.add_argument("--crop", type=int, default=64,
                   help="edge of the centred cube denoised (default 64; 0: whole)")
    add_runtime(m)
