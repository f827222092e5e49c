"""The one list of denoising methods: what each is, what it takes, what it needs.

Every other list of method names (``config.LEARNED_METHODS`` and the like, the refusals of
the volume and series pipelines, the CLI help) is derived from :data:`REGISTRY`. To add a
conventional method: write its function (``methods/classical.py`` for 3D volumes,
``methods/diffusion.py`` for series), put it in that module's table, and add its entry here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MethodSpec:
    """One method.

    Attributes
    ----------
    name
        What ``--method`` and ``DenoiseConfig.method`` take.
    learned
        A network fine-tuned (or applied) by :mod:`noise2average.nn.engine`; otherwise a
        conventional function of the (registered) average.
    volumes, series
        Whether it denoises 3D repetitions (T1w) and 4D diffusion series.
    summary
        A few words for the help and the docs.
    extra
        The optional pip package it needs, if any.
    """

    name: str
    learned: bool
    volumes: bool
    series: bool
    summary: str
    extra: str | None = None


REGISTRY: dict[str, MethodSpec] = {m.name: m for m in (
    MethodSpec("n2a-aligned", True, True, True,
               "Noise2Average, the denoised repetitions re-registered (the default)"),
    MethodSpec("n2a", True, True, True, "Noise2Average as the paper"),
    MethodSpec("n2n", True, True, True, "Noise2Noise"),
    MethodSpec("supervised", True, True, True, "fine-tuned on a clean reference"),
    MethodSpec("pretrained", True, True, True, "the pre-trained network, no fine-tuning"),
    MethodSpec("average", False, True, True, "the plain average"),
    MethodSpec("bm4d", False, True, True, "BM4D on the average (series: volume by volume)",
               "bm4d"),
    MethodSpec("aonlm", False, True, True, "ANTs adaptive non-local means on the average "
               "(series: volume by volume)", "antspyx"),
    MethodSpec("nlmeans", False, True, False, "DIPY non-local means on the average", "dipy"),
    MethodSpec("mppca", False, False, True, "DIPY MP-PCA on the average series", "dipy"),
    MethodSpec("dwidenoise", False, False, True, "MRtrix3 dwidenoise on the average series"),
    MethodSpec("patch2self", False, False, True, "DIPY Patch2Self on the average series",
               "dipy"),
)}


def names(*, learned: bool | None = None, volumes: bool | None = None,
          series: bool | None = None) -> tuple[str, ...]:
    """The method names with the given properties (None: either), in registry order."""
    return tuple(m.name for m in REGISTRY.values()
                 if (learned is None or m.learned == learned)
                 and (volumes is None or m.volumes == volumes)
                 and (series is None or m.series == series))


def method_help() -> str:
    """The ``--method`` help: every name, grouped by what it denoises."""
    learned = names(learned=True)
    classical = names(learned=False, volumes=True)
    series_only = names(volumes=False, series=True)
    return (f"learned: {', '.join(learned)} (default {learned[0]}); on the average: "
            f"{', '.join(classical)}; diffusion series only: {', '.join(series_only)}")
