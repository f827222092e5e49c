"""The QC report of a denoising run: one self-contained HTML file (PNG images embedded as base64
data URIs, inline CSS, no script, no external URL) that opens in any browser, offline.

It shows three orthogonal views of every input repetition, the plain average, the result, the
residual, the noise map and the uncertainty map; the training loss per iteration; SNR
estimates before and after; the configuration, versions and timings. Arrays in, one file out:
the only module that knows about HTML.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np

DPI = 80              # modest: a 2-repetition report of a 1 mm brain stays well under 2 MB
PANELS_WIDTH_IN = 7.2  # the three views side by side
COLORBAR_IN = 1.0      # room for a colour bar and its tick labels

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;
max-width:980px;padding:0 16px 40px;color:#1d1d1f;background:#fff;line-height:1.45}
h1{font-size:1.5em;margin:18px 0 4px}h2{font-size:1.2em;margin:28px 0 8px;
border-bottom:1px solid #ddd;padding-bottom:3px}
.sub{color:#555;margin:0 0 10px}
table{border-collapse:collapse;font-size:.9em;margin:6px 0;display:block;max-width:100%;
overflow-x:auto}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top;
overflow-wrap:anywhere}
.verdict{padding:6px 10px;margin:8px 0;border-left:4px solid}
.verdict.ok{background:#eef7ee;border-color:#3a3}.verdict.warn{background:#fff4e5;border-color:#e80}
th{background:#f4f4f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:10px 0 16px}figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:.9em;color:#333;margin:2px 0 0}
.note{font-size:.85em;color:#444;background:#f7f7f9;border-left:3px solid #bbb;
padding:6px 10px;margin:8px 0}
code{font-size:.95em}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:0 20px}
.cols{display:flex;flex-wrap:wrap;gap:0 16px;align-items:flex-start}
"""


# ---------------------------------------------------------------------------------- geometry

def _to_ras(volume: np.ndarray, affine: np.ndarray | None) -> np.ndarray:
    """Voxel axes permuted and flipped to the closest RAS orientation (views, no resampling)."""
    if affine is None:
        return volume
    from nibabel.orientations import apply_orientation, io_orientation

    return apply_orientation(volume, io_orientation(affine))


def _ras_zooms(affine: np.ndarray | None) -> np.ndarray:
    if affine is None:
        return np.ones(3)
    from nibabel.orientations import io_orientation

    zooms = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(0))
    out = np.empty(3)
    out[io_orientation(affine)[:, 0].astype(int)] = zooms
    return out


class _Views:
    """Axial, coronal and sagittal slices through one point of RAS-oriented volumes.

    Axial and coronal: the subject's left on the left (neurological), superior/anterior up;
    sagittal: anterior on the right. Extents are in mm, so anisotropic voxels look right.
    """

    letters = (("L", "R"), ("L", "R"), ("P", "A"))

    def __init__(self, affine: np.ndarray | None, mask: np.ndarray | None, shape: tuple) -> None:
        self.affine = affine
        z = _ras_zooms(affine)
        if mask is not None and np.any(mask):
            m = _to_ras(np.asarray(mask, bool), affine)
            centre = [int(round(float(np.mean(ix)))) for ix in np.nonzero(m)]
            shape = m.shape
        else:
            shape = _to_ras(np.empty(shape, np.int8), affine).shape
            centre = [s // 2 for s in shape]
        self.centre = centre
        nx, ny, nz = shape
        self.extents = [(0, nx * z[0], 0, ny * z[1]), (0, nx * z[0], 0, nz * z[2]),
                        (0, ny * z[1], 0, nz * z[2])]

    def cut(self, volume: np.ndarray) -> list[np.ndarray]:
        v = _to_ras(np.asarray(volume), self.affine)
        cx, cy, cz = self.centre
        return [v[:, :, cz].T, v[:, cy, :].T, v[cx, :, :].T]


# ----------------------------------------------------------------------------------- figures

def _png(fig) -> bytes:
    """The figure as a PNG, reduced to a 256-colour palette (a third of the RGBA size)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB").quantize(256)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _views_png(views: _Views, volume: np.ndarray, *, cmap: str, vmin: float, vmax: float,
               contour: np.ndarray | None = None, colorbar: str | None = None) -> bytes:
    """One row of three views with a shared window, optionally a mask contour and colour bar."""
    from matplotlib import patheffects
    from matplotlib.figure import Figure

    slices = views.cut(volume)
    outlines = views.cut(contour) if contour is not None else [None] * 3
    widths = [e[1] for e in views.extents]
    heights = [e[3] for e in views.extents]
    gap = 0.06
    scale = (PANELS_WIDTH_IN - 2 * gap) / sum(widths)  # inches per mm
    height_in = max(heights) * scale
    width_in = PANELS_WIDTH_IN + COLORBAR_IN  # the same for every figure: panels align
    fig = Figure(figsize=(width_in, height_in))
    outline = patheffects.withStroke(linewidth=2, foreground="black")
    x = 0.0
    image = None
    for sl, ol, ext, (left, right) in zip(slices, outlines, views.extents, _Views.letters):
        w, h = ext[1] * scale, ext[3] * scale
        ax = fig.add_axes((x / width_in, (height_in - h) / 2 / height_in, w / width_in,
                           h / height_in))
        image = ax.imshow(sl, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower", extent=ext,
                          aspect="equal", interpolation="nearest")
        if ol is not None and ol.any() and not ol.all():
            ax.contour(ol.astype(np.float32), levels=[0.5], colors=["#ff3b30"], linewidths=0.7,
                       origin="lower", extent=ext)
        for pos, letter in ((0.02, left), (0.98, right)):
            ax.text(pos, 0.5, letter, transform=ax.transAxes, color="#ffd60a", fontsize=10,
                    ha="left" if pos < 0.5 else "right", va="center", fontweight="bold",
                    path_effects=[outline])
        ax.set_axis_off()
        x += w + gap
    if colorbar is not None:
        cax = fig.add_axes(((PANELS_WIDTH_IN + 0.08) / width_in, 0.1, 0.12 / width_in, 0.8))
        cb = fig.colorbar(image, cax=cax)
        cb.ax.tick_params(labelsize=9)
        cb.set_label(colorbar, fontsize=9)
    return _png(fig)


def _loss_png(history: Sequence[dict]) -> bytes | None:
    """Training loss against step, one line per iteration (raw, faint, and a running mean)."""
    from matplotlib.figure import Figure

    runs = [(h.get("iteration", i + 1), np.asarray(h["losses"], float))
            for i, h in enumerate(history) if h.get("losses")]
    if not runs:
        return None
    fig = Figure(figsize=(11.0, 3.0))
    ax = fig.add_axes((0.08, 0.16, 0.9, 0.8))
    for (it, loss), colour in zip(runs, _cycle(len(runs))):
        steps = np.arange(1, len(loss) + 1)
        window = max(1, len(loss) // 25)
        if window > 1:
            ax.plot(steps, loss, color=colour, alpha=0.25, linewidth=0.6)
            smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1:], smooth, color=colour, linewidth=1.4,
                    label=f"iteration {it} (mean of {window})")
        else:
            ax.plot(steps, loss, color=colour, linewidth=1.4, marker="o", markersize=3,
                    label=f"iteration {it}")
    if all(np.all(loss > 0) for _, loss in runs):
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step", fontsize=10)
    ax.set_ylabel("training loss (masked MSE)", fontsize=10)
    ax.tick_params(labelsize=9)
    ax.grid(alpha=0.3, linewidth=0.5)
    ax.legend(fontsize=9, frameon=False)
    return _png(fig)


def _cycle(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


# -------------------------------------------------------------------------------------- HTML

def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _figure(png: bytes, alt: str, caption: str, fig_id: str) -> str:
    return (f'<figure id="{fig_id}">{_img(png, alt)}<figcaption>{caption}</figcaption>'
            "</figure>")


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


def _table(rows: dict, columns: int = 1) -> str:
    """Key-value rows; long tables split side by side into ``columns`` tables."""
    items = list(rows.items())
    per = max(1, math.ceil(len(items) / columns))
    tables = []
    for start in range(0, len(items), per):
        body = "".join(f"<tr><th>{html.escape(str(k))}</th>"
                       f"<td>{html.escape('none' if v is None else _fmt(v))}</td></tr>"
                       for k, v in items[start:start + per])
        tables.append(f"<table>{body}</table>")
    return f'<div class="cols">{"".join(tables)}</div>'


def _window(average: np.ndarray, mask: np.ndarray | None) -> tuple[float, float]:
    vals = average[mask] if mask is not None and np.any(mask) else average.ravel()
    lo, hi = (float(v) for v in np.percentile(vals, [0.5, 99.5]))
    lo = min(0.0, lo)
    return lo, hi if hi > lo else lo + 1.0


def _upper(volume: np.ndarray, mask: np.ndarray | None, q: float = 99.0) -> float:
    vals = volume[mask] if mask is not None and np.any(mask) else volume.ravel()
    hi = float(np.percentile(vals, q)) if vals.size else 0.0
    return hi if hi > 0 else 1.0


def _snr_section(snr: dict, method: str) -> str:
    n = snr.get("n")
    rows = [("one repetition", snr.get("sigma_rep"), snr.get("snr_rep")),
            (f"plain average of {n}", snr.get("sigma_average"), snr.get("snr_average")),
            (f"result ({method})", snr.get("sigma_result"), snr.get("snr_result"))]
    body = "".join(f"<tr><th>{html.escape(name)}</th><td class='num'>{_fmt(sd)}</td>"
                   f"<td class='num'>{_fmt(s)}</td></tr>" for name, sd, s in rows)
    table = (f"<table><tr><th></th><th>noise SD (estimated)</th><th>SNR (estimated)</th></tr>"
             f"{body}</table>")
    notes = [f"Signal: the mean of the plain average inside the mask ({_fmt(snr.get('signal'))}). "
             "Noise of one repetition: the robust SD of the differences between the repetitions "
             "(anatomy cancels); the plain average has that SD divided by &radic;N."]
    if snr.get("snr_result") is None:
        notes.append(f"Result: n/a. The method <code>{html.escape(method)}</code> denoises the "
                     "plain average only, so there are no independently denoised repetitions "
                     "whose disagreement could measure the noise that remains.")
    else:
        gain = snr["snr_result"] / snr["snr_average"] if snr.get("snr_average") else None
        notes.append("Result: the same estimator applied to the denoised repetitions (for two, "
                     "the robust SD of (d<sub>1</sub> &minus; d<sub>2</sub>)/&radic;2), divided "
                     "by &radic;N for their mean. <b>This is an estimate of the remaining random "
                     "noise only</b>: errors shared by all denoised repetitions (blurring, bias, "
                     "noise that reaches all of them through the common training target) cancel "
                     "in the differences, so it overstates the true SNR and says nothing about "
                     "sharpness. Look at the images and the residual."
                     + (f" Estimated gain over the plain average: &times;{gain:.3g}." if gain
                        else ""))
    if snr.get("residual_sd") is not None and snr.get("sigma_rep"):
        ratio = snr["residual_sd"] / snr["sigma_rep"]
        notes.append(f"Residual (repetition 1 &minus; result) inside the mask: SD "
                     f"{_fmt(snr['residual_sd'])}, {ratio:.3g} &times; the noise SD of one "
                     "repetition (about 1 when only noise was removed; clearly more when "
                     "anatomy or misalignment went into the residual).")
    return table + "".join(f'<p class="note">{n}</p>' for n in notes)


def _history_table(history: Sequence[dict]) -> str:
    """One row per iteration: the losses summarized, then every scalar the run recorded
    (seconds, diagnostics), so that new per-iteration numbers appear without a change here."""
    if not history:
        return ""
    scalars: list[str] = []
    for h in history:
        scalars += [k for k, v in h.items() if k not in scalars
                    and k not in ("iteration", "loss_first", "loss_last")
                    and isinstance(v, (int, float, str, np.integer, np.floating))]
    cols = ["iteration", "steps", "first loss", "last loss"] + scalars
    rows = []
    for i, h in enumerate(history):
        losses = h.get("losses") or []
        vals = [h.get("iteration", i + 1), len(losses) if losses else None,
                losses[0] if losses else h.get("loss_first"),
                losses[-1] if losses else h.get("loss_last")] + [h.get(k) for k in scalars]
        rows.append("<tr>" + "".join(f"<td class='num'>{html.escape(_fmt(v))}</td>"
                                     for v in vals) + "</tr>")
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in cols)
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _verdict_section(warnings: Sequence[str] | None) -> str:
    """The verdict at the top of the report: no warnings, or each one to check."""
    if warnings is None:
        return ""
    if not warnings:
        body = ('<p class="verdict ok"><b>Verdict: no warnings.</b> The checks on the gain, the '
                "mask, the repetitions and the pre-training range found nothing to flag; the "
                "images below still deserve a look.</p>")
    else:
        items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
        body = (f'<p class="verdict warn"><b>Verdict: check the result</b> '
                f"({len(warnings)} warning{'s' if len(warnings) > 1 else ''}).</p><ul>{items}</ul>")
    return f'<section id="warnings"><h2>Warnings</h2>{body}</section>'


def render_report(*, inputs: Sequence[np.ndarray], average: np.ndarray, result: np.ndarray,
                  residual: np.ndarray, noise_map: np.ndarray,
                  uncertainty: np.ndarray | None = None, mask: np.ndarray | None = None,
                  affine: np.ndarray | None = None, sigma: float | None = None,
                  history: Sequence[dict] = (), snr: dict | None = None,
                  config: dict | None = None, environment: dict | None = None,
                  timings: dict | None = None, details: dict | None = None,
                  warnings: Sequence[str] | None = None,
                  title: str = "noise2average QC report") -> str:
    """The report as one HTML string. See :func:`write_report` for the parameters."""
    config = dict(config or {})
    method = str(config.get("method", "?"))
    mask = None if mask is None else np.asarray(mask, bool)
    views = _Views(affine, mask, np.shape(result))
    lo, hi = _window(np.asarray(average), mask)
    grey = {"cmap": "gray", "vmin": lo, "vmax": hi, "colorbar": "intensity"}
    n = len(inputs)
    figs = []
    for k, rep in enumerate(inputs, 1):
        figs.append(_figure(_views_png(views, rep, **grey), f"repetition {k}",
                            f"<b>Input repetition {k}</b> of {n}.", f"view-rep-{k}"))
    figs.append(_figure(_views_png(views, average, contour=mask, **grey), "plain average",
                        f"<b>Plain average</b> of the {n} repetitions; red: the mask outline.",
                        "view-average"))
    figs.append(_figure(_views_png(views, result, **grey), "result",
                        f"<b>Result</b> ({html.escape(method)}), same grey window as the inputs "
                        f"([{_fmt(lo)}, {_fmt(hi)}]).", "view-result"))
    res = np.asarray(residual, np.float32)
    if mask is not None:
        res = np.where(mask, res, 0)
    r = 3 * sigma if sigma else _upper(np.abs(res), mask)
    figs.append(_figure(
        _views_png(views, res, cmap="RdBu_r", vmin=-r, vmax=r, colorbar="repetition 1 - result"),
        "residual", "<b>Residual</b>: repetition 1 minus the result, inside the mask, on a "
        f"symmetric scale of &plusmn;{_fmt(r)}"
        + (" (3 noise SDs of one repetition)" if sigma else "")
        + ". It should look like noise; anatomy here was removed by the denoiser.",
        "view-residual"))
    figs.append(_figure(
        _views_png(views, noise_map, cmap="magma", vmin=0, vmax=_upper(noise_map, mask),
                   colorbar="noise SD"), "noise map",
        "<b>Noise map</b>: local noise SD of one repetition, from the differences between the "
        "repetitions (misalignment shows up as extra noise at edges).", "view-noise-map"))
    if uncertainty is not None:
        figs.append(_figure(
            _views_png(views, uncertainty, cmap="viridis", vmin=0,
                       vmax=_upper(np.asarray(uncertainty), mask), colorbar="uncertainty"),
            "uncertainty map", "<b>Uncertainty map</b>: local standard error of the mean of the "
            "denoised repetitions, high where they disagree (where the result rests on the "
            "network more than on the data).", "view-uncertainty"))

    loss_png = _loss_png(history)
    if loss_png is not None:
        loss_html = _figure(loss_png, "training loss", "Training loss per optimizer step, one "
                            "line per iteration.", "loss-plot")
    else:
        loss_html = (f'<p class="note">No training: the method <code>{html.escape(method)}'
                     "</code> has no loss to show.</p>")
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    shape = "&times;".join(str(s) for s in np.shape(result))
    sub = (f"{n} repetitions, {shape} voxels, method <code>{html.escape(method)}</code>, "
           f"created {created}")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>", f'<p class="sub">{sub}</p>',
        _verdict_section(warnings),
        '<section id="snr"><h2>Estimated SNR before and after</h2>',
        _snr_section(snr or {}, method), "</section>",
        '<section id="views"><h2>Images</h2><p class="sub">Axial, coronal and sagittal slices '
        f"through the mask centre (voxel {tuple(views.centre)} after reorientation to RAS); "
        "axial and coronal in neurological convention (subject's left on the left).</p>",
        '<div class="grid">', *figs, "</div></section>",
        '<section id="loss"><h2>Training loss</h2>', loss_html, _history_table(history),
        "</section>",
        '<section id="config"><h2>Configuration</h2>', _table(config, columns=3),
        (_table(details) if details else ""), "</section>",
        '<section id="environment"><h2>Versions</h2>', _table(environment or {}, columns=2),
        "</section>",
        '<section id="timings"><h2>Timings</h2>', _table(timings or {}), "</section>",
        "</body></html>",
    ]
    # plain ASCII whatever the locale: other characters become character references
    return "\n".join(parts).encode("ascii", "xmlcharrefreplace").decode("ascii")


def write_report(path: str | os.PathLike, *, inputs: Sequence[np.ndarray], average: np.ndarray,
                 result: np.ndarray, residual: np.ndarray, noise_map: np.ndarray,
                 uncertainty: np.ndarray | None = None, mask: np.ndarray | None = None,
                 affine: np.ndarray | None = None, sigma: float | None = None,
                 history: Sequence[dict] = (), snr: dict | None = None,
                 config: dict | None = None, environment: dict | None = None,
                 timings: dict | None = None, details: dict | None = None,
                 warnings: Sequence[str] | None = None,
                 title: str = "noise2average QC report") -> None:
    """Write the QC report of one run as a self-contained HTML file (atomically).

    Parameters
    ----------
    path
        The ``.html`` file.
    inputs
        The noisy repetitions (3D, one grid).
    average, result, residual, noise_map
        The plain average, the denoised image, ``inputs[0] - result`` and the local noise SD
        of one repetition, on the inputs' grid and intensity scale.
    uncertainty
        An uncertainty map of the result, when the method gives one.
    mask
        The brain mask: the views pass through its centre and the windows use its voxels.
    affine
        The voxel-to-world matrix, to show the views in RAS orientation with their true voxel
        sizes (default: the voxel axes as they are).
    sigma
        Noise SD of one repetition; the residual is shown on +-3 sigma.
    history
        Per iteration: ``losses`` (list of floats, absent without training), ``train_seconds``,
        ``infer_seconds``.
    snr
        From :func:`noise2average.arrays.snr.snr_summary`.
    config, environment, timings, details
        Flat tables: the run's configuration, versions, timings and file-level details.
    warnings
        Sentences from :func:`noise2average.arrays.qc.run_warnings`, shown under a verdict at
        the top (None: no verdict section).
    title
        The page heading.
    """
    from .atomic import write_text

    write_text(path, render_report(
        inputs=inputs, average=average, result=result, residual=residual, noise_map=noise_map,
        uncertainty=uncertainty, mask=mask, affine=affine, sigma=sigma, history=history,
        snr=snr, config=config, environment=environment, timings=timings, details=details,
        warnings=warnings, title=title))
