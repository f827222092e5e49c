"""A compact, committable copy of a pre-training checkpoint folder (maintainers only).

    python scripts/pack_resume.py runs/pretrain_unet/t1w-unet.safetensors.ckpt pretrain_state/t1w-unet

The weights and the loss history are kept as they are; of Adam's state only the second moments
are kept, in bfloat16 (the first moments restart at zero on resume, see
``noise2average.io.checkpoint``), which makes the optimizer file a quarter of its size.
Continue with ``n2a pretrain ... --checkpoint pretrain_state/t1w-unet --resume --steps N``.
"""

import shutil
import sys
from pathlib import Path

import torch

src, dest = Path(sys.argv[1]), Path(sys.argv[2])
dest.mkdir(parents=True, exist_ok=True)
opt = torch.load(src / "optimizer.pt", map_location="cpu", weights_only=True)
for entry in opt["state"].values():
    entry.pop("exp_avg", None)
    # bfloat16 keeps float32's range: tiny second moments must not underflow to 0
    entry["exp_avg_sq"] = entry["exp_avg_sq"].to(torch.bfloat16)
torch.save(opt, dest / "optimizer.pt")
shutil.copyfile(src / "model.safetensors", dest / "model.safetensors")
shutil.copyfile(src / "state.json", dest / "state.json")  # last: marks a complete checkpoint
for f in sorted(dest.iterdir()):
    print(f"{f}  {f.stat().st_size / 1e6:.1f} MB")
