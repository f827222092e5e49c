"""``n2a bids``: the BIDS-App options."""

from __future__ import annotations

from .common import BLOCK_HELP, add_runtime


def add(sub) -> None:
    bp = sub.add_parser("bids", help="BIDS-App: denoise each participant's repeated acquisitions "
                                     "into BIDS derivatives (serially or on a Dask cluster)")
    bp.add_argument("bids_dir", metavar="BIDS_DIR", help="the BIDS dataset (only read)")
    bp.add_argument("output_dir", metavar="OUT_DIR",
                    help="derivatives folder, e.g. BIDS_DIR/derivatives/noise2average")
    bp.add_argument("analysis_level", choices=["participant"], help="participant (the only level)")
    bp.add_argument("--participant-label", "--participant_label", dest="participant_label",
                    nargs="+", metavar="LABEL", help="participants to run, with or without sub- "
                                                     "(default: all)")
    bp.add_argument("--session-label", "--session_label", dest="session_label", nargs="+",
                    metavar="LABEL", help="sessions to run, with or without ses- (default: all)")
    par = bp.add_mutually_exclusive_group()
    par.add_argument("--workers", type=int, metavar="N",
                     help="run groups in parallel on a local Dask cluster of N processes")
    par.add_argument("--scheduler", metavar="ADDRESS",
                     help="send groups to a running Dask scheduler, e.g. tcp://host:8786")
    bp.add_argument("--skip-existing", action="store_true",
                    help="skip groups whose derivative exists (resume a cohort)")
    bp.add_argument("--resume", action="store_true",
                    help="continue interrupted groups from their checkpoints")
    bp.add_argument("--method", default="n2a-aligned",
                    help="n2a-aligned (default), n2a, n2n, pretrained, average, ...")
    bp.add_argument("--iterations", type=int, default=None, help="Noise2Average iterations (default 2)")
    bp.add_argument("--steps", type=int, default=None, help="optimizer steps per iteration")
    bp.add_argument("--lr", type=float, default=None, help="learning rate")
    bp.add_argument("--init", default="pretrained",
                    help="pretrained, pretrained-munet, scratch or a .safetensors PATH")
    bp.add_argument("--block", type=int, default=None, help=BLOCK_HELP)
    add_runtime(bp)
