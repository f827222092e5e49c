"""``n2a evaluate``."""

from __future__ import annotations


def add(sub) -> None:
    e = sub.add_parser("evaluate", help="PSNR, SSIM, NMAE, sharpness against a clean reference")
    e.add_argument("images", nargs="+", metavar="IMAGE")
    e.add_argument("--reference", required=True)
    e.add_argument("--mask", required=True)
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
