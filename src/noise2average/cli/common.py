"""What every subcommand's options share: the runtime group and the inference block help."""

from __future__ import annotations

import argparse


def add_runtime(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runtime")
    g.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="auto: bf16 autocast on GPUs and on CPUs with AMX/AVX512-BF16, else fp32")
    g.add_argument("--threads", type=int, default=None, help="CPU threads (default: the CPUs this process may use: affinity, cgroup quota, "
                        "or OMP_NUM_THREADS)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--force", action="store_true", help="overwrite existing outputs")


BLOCK_HELP = ("inference block edge in voxels (default 160: a 2.4 GB peak on a 1 mm brain; "
              "96: 1.1 GB, 1.4x slower)")
