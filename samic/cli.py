"""The ``samic`` command line. Each subcommand lives in its own module under
``samic.commands`` and registers itself through ``register(subparsers)``.

User errors (bad paths, bad values, unreadable files) exit with status 2 and one line
on stderr; they never print a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from samic.errors import UserError  # re-exported: samic.cli.UserError is the same class

COMMAND_MODULES = (
    "samic.commands.info",
    "samic.commands.bench",
    "samic.commands.compress",
    "samic.commands.decompress",
    "samic.commands.train",
    "samic.commands.eval",
    "samic.commands.bench_codec",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samic", description="SAMIC learned image codec")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"samic {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # `python -m samic.cli` runs this file as a second module, __main__, whose UserError is
    # not the samic.cli.UserError that commands raise: run the real samic.cli.main.
    from samic.cli import main as _main

    sys.exit(_main())
