"""Conventional comparison methods, all with one call shape:
``method(reps, mask, sigma) -> image`` where ``sigma`` is one repetition's noise SD.

They denoise the plain average of the repetitions (noise SD sigma / sqrt(N)), as a user with
repeated scans would. The learned methods (n2a, n2n, supervised, pretrained) run through
:func:`noise2average.pipeline.denoise`, which also dispatches to these, so a benchmark is a loop
over method names.

:mod:`.registry` is the one list of every method (learned and conventional), with what each
denoises and needs; the other lists of names derive from it.

For 4D diffusion series, :data:`DIFFUSION` holds ``average``, ``mppca``, ``dwidenoise`` and
``patch2self`` (:mod:`.diffusion`), called as ``method(reps, mask, sigma, bvals=...)`` by
:func:`noise2average.diffusion.denoise_dwi`.
"""

from .classical import CLASSICAL, EXTRAS
from .diffusion import DIFFUSION
from .registry import REGISTRY, MethodSpec

__all__ = ["CLASSICAL", "DIFFUSION", "EXTRAS", "REGISTRY", "MethodSpec"]
