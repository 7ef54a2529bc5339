"""The `nirst` command."""

from __future__ import annotations

import argparse
import sys

from . import _demo, _evaluate, _experiment, _forward, _mesh, _reconstruct, _reproduce, _show, _simulate, _train

_COMMANDS = {
    "demo": _demo,
    "mesh": _mesh,
    "forward": _forward,
    "simulate": _simulate,
    "show": _show,
    "reconstruct": _reconstruct,
    "train": _train,
    "evaluate": _evaluate,
    "experiment": _experiment,
    "reproduce": _reproduce,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `nirst` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="nirst", description="MRI-guided near-infrared spectral tomography in JAX."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in _COMMANDS.items():
        module.add_parser(commands, name)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `nirst`; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command].run(args) or 0
    except (ValueError, FileNotFoundError) as error:
        print(f"nirst {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
