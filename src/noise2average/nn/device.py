"""Device and precision policy: CUDA, bf16 autocast on CPUs with native bf16 matrix units, fp32.

bf16 autocast only pays on CPUs with AMX or AVX512-BF16; elsewhere oneDNN emulates it and a
3D convolution runs hundreds of times slower than fp32 (measured on an AVX2-only AMD EPYC), so
``auto`` checks the CPU flags instead of assuming.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from ..errors import InputError


def _cgroup_cpu_limit(root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs allowed by this process's cgroup CPU quota (v2 ``cpu.max`` or v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), or None without a quota."""
    try:
        with open(os.path.join(root, "cpu.max")) as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as fh:
            quota = int(fh.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as fh:
            period = int(fh.read())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def available_cpus(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """The CPUs this process may actually use: its affinity mask (SLURM/PBS cpusets,
    ``taskset``), capped by a cgroup CPU quota (containers, ``docker --cpus``), at least 1.

    ``os.cpu_count()`` counts the machine's cores, so a job given 4 cores of a 64-core node
    would run 64 threads on 4 cores and thrash.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_limit(cgroup_root)
    if quota is not None:
        n = min(n, max(1, int(quota)))  # a fractional quota rounds down: no oversubscription
    return max(1, n)


def default_threads() -> int:
    """Default torch CPU threads: ``OMP_NUM_THREADS`` when set, else :func:`available_cpus`."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return available_cpus()


def cpu_has_fast_bf16() -> bool:
    """True when /proc/cpuinfo lists amx_bf16 or avx512_bf16."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


@dataclass(frozen=True)
class Policy:
    """Where and how tensors are computed."""

    device: torch.device
    dtype: torch.dtype | None  # autocast dtype; None = fp32
    channels_last: bool

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def to_tensor(self, array) -> torch.Tensor:
        # a NumPy array or a (pinned) CPU tensor from worker processes, without a copy
        t = torch.as_tensor(array).to(self.device, non_blocking=True)
        if self.channels_last and t.ndim == 5:
            t = t.contiguous(memory_format=torch.channels_last_3d)
        return t

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(self.device)
        if self.device.type == "cuda":
            # training and block inference repeat a few input shapes: let cuDNN pick the
            # fastest convolution algorithm for each once
            torch.backends.cudnn.benchmark = True
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last_3d)
        return model

    @property
    def hardware(self) -> str:
        """``cuda``, ``cpu-bf16`` (bf16 autocast on a CPU) or ``cpu`` (fp32): the key of
        budgets that follow the device's speed."""
        if self.device.type == "cuda":
            return "cuda"
        return "cpu-bf16" if self.dtype is not None else "cpu"

    def describe(self) -> str:
        prec = "fp32" if self.dtype is None else str(self.dtype).replace("torch.", "")
        return f"{self.device.type}/{prec}{'/channels_last_3d' if self.channels_last else ''}"


def resolve_policy(device: str = "auto", precision: str = "auto",
                   threads: int | None = None) -> Policy:
    """Pick the device ('auto', 'cpu', 'cuda', 'cuda:1') and precision ('auto', 'fp32', 'bf16')."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise InputError(f"invalid --device {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but PyTorch sees no CUDA GPU")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported --device {device!r}; use auto, cpu or cuda")
    if precision not in ("auto", "fp32", "bf16"):
        raise InputError(f"invalid precision {precision!r}; use auto, fp32 or bf16")
    if dev.type == "cuda":
        fast = torch.cuda.is_bf16_supported()
    else:
        fast = cpu_has_fast_bf16()
    use_bf16 = precision == "bf16" or (precision == "auto" and fast)
    if threads is not None:
        if threads < 1:
            raise InputError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    elif dev.type == "cpu":
        torch.set_num_threads(default_threads())
    return Policy(dev, torch.bfloat16 if use_bf16 else None, channels_last=dev.type == "cpu")
