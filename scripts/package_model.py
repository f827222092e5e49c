"""Copy a pre-trained model into the package and record its SHA-256 (maintainers only).

    python scripts/package_model.py runs/pretrain/t1w-cpu.safetensors
"""

import json
import shutil
import sys
from pathlib import Path

from noise2average.io.weights import PACKAGED, load_model, sha256

src = Path(sys.argv[1])
load_model(src)  # refuse anything that is not a model file
dest_dir = Path(__file__).resolve().parents[1] / "src" / "noise2average" / "weights"
dest = dest_dir / PACKAGED["t1w"]
shutil.copyfile(src, dest)
manifest = {dest.name: sha256(dest)}
(dest_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
print(f"packaged {src} -> {dest} ({manifest[dest.name][:12]})")
