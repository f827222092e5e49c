"""``n2a dti-split`` and ``n2a dti-metrics``."""

from __future__ import annotations


def dti_split(sub) -> None:
    ds = sub.add_parser("dti-split", help="one DTI series -> repetitions from disjoint direction "
                                          "subsets, synthesized on a common scheme")
    ds.add_argument("dwi", metavar="DWI", help="4D DWI series (NIfTI)")
    ds.add_argument("--bvals", required=True, help="FSL bvals file")
    ds.add_argument("--bvecs", required=True, help="FSL bvecs file")
    ds.add_argument("--mask", help="brain mask (default: fit every voxel)")
    ds.add_argument("-o", "--output", required=True,
                    help="output folder: rep-K.nii.gz (+ .json), dwi.bval, dwi.bvec")
    ds.add_argument("--dirs", type=int, choices=[6, 12], default=6,
                    help="DWIs per repetition on the common scheme (6 or 12; default 6)")
    ds.add_argument("--subsets", type=int, default=2, help="repetitions = subsets (default 2)")
    ds.add_argument("--subset-size", type=int, default=None,
                    help="directions per subset (default: the shell's directions shared out "
                         "evenly; 6, the fewest that fit a tensor, is the paper's split)")
    ds.add_argument("--shell", type=float, default=None,
                    help="b-value of the shell to use (default: the one nearest 1000)")
    ds.add_argument("--b0", choices=["auto", "mean", "split"], default="auto",
                    help="b=0 of every repetition: disjoint groups of the b=0 volumes "
                         "(split), the mean of all of them (mean), or split where there are "
                         "enough b=0 volumes, else mean (auto, default)")
    ds.add_argument("--method", default="WLS", choices=["WLS", "OLS", "NLLS"],
                    help="tensor fit (default WLS)")
    ds.add_argument("--quiet", action="store_true")
    ds.add_argument("--force", action="store_true", help="overwrite existing outputs")


def dti_metrics(sub) -> None:
    dm = sub.add_parser("dti-metrics", help="FA, MD, AD, RD and V1 of a DWI series (DIPY, WLS)")
    dm.add_argument("dwi", metavar="DWI", help="4D DWI series (NIfTI)")
    dm.add_argument("--bvals", required=True, help="FSL bvals file")
    dm.add_argument("--bvecs", required=True, help="FSL bvecs file")
    dm.add_argument("--mask", help="brain mask (default: a head mask of the mean b=0)")
    dm.add_argument("-o", "--output", required=True, help="output folder: FA, MD, AD, RD, V1 .nii.gz")
    dm.add_argument("--method", default="WLS", choices=["WLS", "OLS", "NLLS"],
                    help="tensor fit (default WLS)")
    dm.add_argument("--force", action="store_true", help="overwrite existing outputs")
