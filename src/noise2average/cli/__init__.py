"""The ``n2a`` command line: one module per subcommand's options, thin handlers in the
workflow modules, imports deferred so that ``n2a --help`` is instant."""

from __future__ import annotations

import argparse
import sys

from . import denoise, pretrain, simulate, dti, demo, benchmark, bids, register, evaluate


def _parser() -> argparse.ArgumentParser:
    from .._version import __version__

    ap = argparse.ArgumentParser(prog="n2a", description="Noise2Average denoising of MRI repetitions.")
    ap.add_argument("--version", action="version", version=f"noise2average {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    denoise.add(sub)
    pretrain.add(sub)
    simulate.add(sub)
    dti.dti_split(sub)
    dti.dti_metrics(sub)
    demo.add(sub)
    benchmark.add(sub)
    bids.add(sub)
    register.add(sub)
    evaluate.add(sub)
    return ap


# every subcommand's handler, as "module:function" in noise2average, imported only when it runs
HANDLERS = {"denoise": "workflows:denoise_files", "pretrain": "workflows_pretrain:pretrain_files",
            "simulate": "workflows:simulate_files", "demo": "workflows:demo",
            "benchmark": "workflows:benchmark_files", "evaluate": "workflows:evaluate_files",
            "bids": "bids:run_app", "register": "workflows:register_files",
            "dti-split": "workflows_dwi:dti_split_files",
            "dti-metrics": "workflows_dwi:dti_metrics_files"}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from ..errors import InputError

    try:
        from importlib import import_module

        module, handler = HANDLERS[args.command].split(":")
        rc = getattr(import_module(f"noise2average.{module}"), handler)(args)
    except InputError as exc:
        print(f"n2a {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"n2a {args.command}: interrupted", file=sys.stderr)
        return 130
    return rc if type(rc) is int else 0  # a handler may report partial failure (n2a bids: 1)
