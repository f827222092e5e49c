"""Copy a pre-trained model into the package and record its SHA-256 (maintainers only).

    python scripts/package_model.py runs/pretrain/t1w-cpu.safetensors
    python scripts/package_model.py runs/pretrain_dwi/dwi-cpu.safetensors dwi
"""

import json
import shutil
import sys
from pathlib import Path

from noise2average.io.weights import PACKAGED, load_model, sha256

src = Path(sys.argv[1])
name = sys.argv[2] if len(sys.argv) > 2 else "t1w"
load_model(src)  # refuse anything that is not a model file
dest_dir = Path(__file__).resolve().parents[1] / "src" / "noise2average" / "weights"
dest = dest_dir / PACKAGED[name]
shutil.copyfile(src, dest)
manifest_path = dest_dir / "manifest.json"
manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
manifest[dest.name] = sha256(dest)  # the other packaged models keep their entries
manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")
print(f"packaged {src} -> {dest} ({manifest[dest.name][:12]})")

# the loss curve for the model card (docs/, not the package)
losses_path = src.with_suffix(".losses.json")
if losses_path.is_file():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    losses = np.asarray(json.loads(losses_path.read_text()))
    k = max(1, min(50, len(losses) // 5))
    smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.semilogy(losses, color="0.8", lw=0.5, label="per step")
    ax.semilogy(np.arange(k - 1, len(losses)), smooth, color="C0", label=f"mean of {k}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("masked MSE (normalized units)")
    ax.legend()
    fig.tight_layout()
    loss_name = {"t1w": "pretrain_loss_unet.png", "t1w-munet": "pretrain_loss.png"}.get(
        name, f"pretrain_loss_{name}.png")
    out = Path(__file__).resolve().parents[1] / "docs" / loss_name
    fig.savefig(out, dpi=110)
    print(f"loss curve -> {out}")
