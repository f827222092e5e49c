"""``n2a pretrain``: the options of T1w and diffusion pre-training."""

from __future__ import annotations

from .common import add_runtime


def add(sub) -> None:
    p = sub.add_parser("pretrain", help="supervised residual pre-training with simulated noise")
    p.add_argument("-o", "--output", required=True, help="model file (.safetensors)")
    p.add_argument("--images", nargs="*", default=None,
                   help="clean training images (default: MNI152 2009a T1 from nilearn)")
    p.add_argument("--masks", nargs="*", default=None, help="brain masks, one per image")
    p.add_argument("--data", choices=("template", "randomized"), default="template",
                   help="without --images: the MNI152 T1 as it is (template, default), or "
                        "domain-randomized brains from every source found (randomized)")
    p.add_argument("--extra-data", metavar="DIR",
                   help="--data randomized: folder with more sources "
                        "(scripts/get_pretrain_data.sh fills data/pretrain)")
    p.add_argument("--shapes", type=float, default=0.0, metavar="WEIGHT",
                   help="--data randomized: also draw random label maps (anatomy of no "
                        "species) with this weight beside the brain sources' (default 0: none)")
    p.add_argument("--crop", type=int, default=72,
                   help="--data randomized: edge of each randomized cube (default 72)")
    p.add_argument("--multicoil", type=float, default=0.0,
                   help="probability of non-central chi (2-4 coils) noise instead of Rician")
    p.add_argument("--refresh", type=int, default=50,
                   help="steps between fresh noisy volumes (default 50)")
    p.add_argument("--pool", type=int, default=1,
                   help="noisy volumes each batch's patches are drawn from (default 1; 8 for "
                        "networks large enough to swing to one volume)")
    p.add_argument("--preset", default="cpu",
                   help="architecture: cpu (default), paper, tiny, unet, unet-tiny")
    p.add_argument("--init", metavar="MODEL",
                   help="start from these weights (a model file, or 'pretrained' for the "
                        "shipped T1w U-Net) with a fresh optimizer and schedule; the "
                        "architecture is the file's (--preset is ignored)")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--patch", type=int, default=32)
    p.add_argument("--sigma-range", type=float, nargs=2, default=(0.01, 0.12), metavar=("LO", "HI"))
    p.add_argument("--dwi", action="store_true",
                   help="pre-train the diffusion network (b0 + DWIs) on the Colin27 tensor phantom")
    p.add_argument("--group-size", type=int, default=7,
                   help="--dwi: channels per group, b0 + DWIs (default 7)")
    p.add_argument("--snr-range", type=float, nargs=2, default=(8.0, 40.0), metavar=("LO", "HI"),
                   help="--dwi: b0 SNR range (default 8 40)")
    p.add_argument("--workers", type=int, default=0,
                   help="processes that synthesize training batches (default 0: the training "
                        "process itself; on a GPU, one per spare CPU core)")
    p.add_argument("--minutes", type=float, default=0.0,
                   help="train for this many minutes of wall time (or --steps, whichever comes "
                        "first); the cosine schedule runs over the time (default 0: no budget)")
    p.add_argument("--checkpoint", help="checkpoint folder (default: OUTPUT + .ckpt)")
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--resume", action="store_true")
    add_runtime(p)
