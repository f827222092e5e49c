"""PNG figures: the same slices of several volumes side by side."""

from __future__ import annotations

import os

import numpy as np


def slices_figure(path: str | os.PathLike, volumes: dict[str, np.ndarray],
                  reference: np.ndarray | None = None, vmax: float | None = None) -> None:
    """Axial, coronal and sagittal middle slices of each volume (one column per volume); with a
    reference, a last row of absolute error maps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .atomic import atomic_path

    names = list(volumes)
    first = volumes[names[0]]
    c = [s // 2 for s in first.shape]
    cuts = [lambda v: v[:, :, c[2]].T, lambda v: v[:, c[1], :].T, lambda v: v[c[0], :, :].T]
    rows = 3 + (reference is not None)
    vmax = vmax or float(np.percentile(first, 99.5))
    fig, axes = plt.subplots(rows, len(names), figsize=(2.4 * len(names), 2.4 * rows),
                             squeeze=False)
    for j, n in enumerate(names):
        v = volumes[n]
        for i, cut in enumerate(cuts):
            axes[i, j].imshow(cut(v), cmap="gray", origin="lower", vmin=0, vmax=vmax)
        axes[0, j].set_title(n, fontsize=9)
        if reference is not None:
            axes[3, j].imshow(cuts[0](np.abs(v - reference)), cmap="magma", origin="lower",
                              vmin=0, vmax=0.2 * vmax)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
