"""Progress bars, and the training time left measured from a run's own first steps."""

from __future__ import annotations

import sys
import time


def progress_bar(total: int, desc: str, quiet: bool):
    """A tqdm bar of ``total`` units (disabled when ``quiet``)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=quiet, leave=False, dynamic_ncols=True)


class TimeLeft:
    """Progress bars for a run of ``total_steps`` optimizer steps that print, once, the time
    left to them as measured from the run's own first ``after`` steps (not guessed in
    advance).

    Use ``progress`` wherever a pipeline takes a progress factory ``(total, description)``;
    bars whose description starts with "train" (fine-tuning) or "tune" (the output pass's
    tuning, whose steps cost about as much: 0.16 and 0.17 s on one EPYC thread) are counted.
    """

    def __init__(self, total_steps: int, label: str, after: int = 10, quiet: bool = False):
        self.total, self.label, self.after, self.quiet = total_steps, label, after, quiet
        self.done, self.t0, self.said = 0, None, False

    def progress(self, total: int, desc: str):
        bar = progress_bar(total, desc, self.quiet)
        if not desc.startswith(("train", "tune")):
            return bar
        update = bar.update

        def counted(n: int = 1):
            self._count(n)
            return update(n)

        bar.update = counted
        return bar

    def _count(self, n: int) -> None:
        now = time.perf_counter()
        if self.t0 is None:
            self.t0 = now  # the first step's cost (warm-up) is left out of the rate
            return
        self.done += n
        if not self.said and self.done >= self.after and self.total > self.done + 1:
            rate = (now - self.t0) / self.done
            left = rate * (self.total - self.done - 1)
            self.said = True
            if not self.quiet:
                from tqdm.auto import tqdm

                # tqdm.write keeps the line apart from the progress bar being drawn
                tqdm.write(f"{self.label}: {rate:.2f} s per training step, at most about "
                           f"{left / 60:.1f} min of training and tuning left (measured from "
                           f"its first {self.done + 1} steps), then inference",
                           file=sys.stderr)
