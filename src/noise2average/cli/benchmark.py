"""``n2a benchmark``."""

from __future__ import annotations

from .common import add_runtime


def add(sub) -> None:
    from ..config import BENCHMARK_METHODS

    b = sub.add_parser("benchmark", help="simulate a case (protocol v1), run methods, score them")
    b.add_argument("--reference", help="clean reference NIfTI (default: Colin27 ch2.nii.gz)")
    b.add_argument("--mask", help="brain mask NIfTI (default: Colin27 ch2bet.nii.gz > 0)")
    b.add_argument("--sigma", type=float, default=0.05)
    b.add_argument("--reps", type=int, default=2)
    b.add_argument("--echo", action="store_true")
    b.add_argument("--methods", nargs="+", default=None,
                   help=f"default: {' '.join(BENCHMARK_METHODS)}; a "
                        "method may carry settings, NAME:key=value,..., e.g. "
                        "n2a:align=register,iterations=4")
    b.add_argument("--iterations", type=int, default=None, help="Noise2Average iterations scored")
    b.add_argument("--steps", type=int, default=None, help="optimizer steps per iteration")
    b.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate")
    b.add_argument("--init", default=None, help="initial model (default: the shipped one)")
    b.add_argument("--crop", type=int, default=None, help="score a centred cube of this edge")
    b.add_argument("--quick", action="store_true", help="--crop 64 and 100 steps: minutes, not hours")
    b.add_argument("-o", "--output", required=True, help="output folder")
    add_runtime(b)
