"""``n2a simulate``: noisy repetitions of a clean reference."""

from __future__ import annotations


def add(sub) -> None:
    s = sub.add_parser("simulate", help="noisy repetitions of a clean reference (benchmark protocol v1)")
    s.add_argument("--reference", help="clean reference NIfTI (default: Colin27 ch2.nii.gz)")
    s.add_argument("--mask", help="brain mask NIfTI (default: Colin27 ch2bet.nii.gz > 0)")
    s.add_argument("--sigma", type=float, default=None,
                   help="noise level (1.0 = 99th pct in brain; default 0.05)")
    s.add_argument("--reps", type=int, default=2, help="number of repetitions (>= 2)")
    s.add_argument("--echo", action="store_true", help="repetition 2 is a later echo")
    s.add_argument("--crop", type=int, default=None,
                   help="keep a centred cube of this edge (after simulating the whole volume)")
    s.add_argument("-o", "--output", required=True, help="output folder")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--force", action="store_true")
    sd = s.add_argument_group("diffusion phantom (--dwi)")
    sd.add_argument("--dwi", action="store_true",
                    help="simulate the DWI phantom (MNI152 GM/WM/CSF tensor field) instead of T1w: "
                         "reference (clean 4D), mask, wm, rep-K, dwi.bval/.bvec, reference_FA...")
    sd.add_argument("--snr", type=float, default=20.0, help="b=0 SNR in white matter (default 20)")
    sd.add_argument("--dirs", type=int, default=32, help="b=1000 directions (default 32)")
    sd.add_argument("--b0s", type=int, default=2, help="b=0 volumes (default 2)")
    sd.add_argument("--bval", type=float, default=1000.0, help="b-value in s/mm^2 (default 1000)")
    sd.add_argument("--misalign", action="store_true",
                    help="repetitions after the first get a small residual rigid misalignment")
    sd.add_argument("--tissues", nargs=3, metavar=("GM", "WM", "CSF"),
                    help="tissue fraction maps to build the phantom from (default MNI152 2009a)")
