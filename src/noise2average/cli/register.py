"""``n2a register``."""

from __future__ import annotations


def add(sub) -> None:
    r = sub.add_parser("register", help="rigidly register repetitions 2..N to repetition 1")
    r.add_argument("reps", nargs="+", metavar="REP", help="2 or more NIfTI repetitions (any grids)")
    r.add_argument("-o", "--output", required=True,
                   help="output folder: rep-1.nii.gz, rep-K_registered.nii.gz on rep 1's grid, "
                        "rep-K_to_rep-1.txt (ITK/ANTs transform), JSON sidecars")
    r.add_argument("--mask", help="brain mask on rep 1's grid (default: a head mask of rep 1)")
    r.add_argument("--quiet", action="store_true", help="no progress lines")
    r.add_argument("--force", action="store_true", help="overwrite existing outputs")
