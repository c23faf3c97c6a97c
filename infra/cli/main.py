"""The ``anycast`` command: render, ripe, monitoring, catchment, preflight, lab. Library code raises; only this module prints and exits.

Each command group lives in its own module exposing ``register(subparsers)``; the parser it adds sets
``func(args) -> int`` (the exit code). ``ConfigError`` from any of them becomes one line per problem and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from infra.model import ConfigError
from infra.safe_write import OutputRefused
from infra.terminal import PrintableStream, printable

# Modules that add sub-commands, in the order `anycast --help` lists them.
COMMAND_MODULES = ("infra.cli.render", "infra.cli.reboots", "infra.cli.dnssec", "infra.cli.ripe", "infra.cli.monitoring",
                   "infra.cli.catchment", "infra.cli.preflight",
                   "lab.cli")

EXIT_OK, EXIT_REFUSED, EXIT_BAD_INPUT = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anycast", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a missing dependency inside the module is a real error
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Everything printed (server error bodies, file names, stack values) passes through printable(): no terminal
    # control sequence from outside reaches the user's terminal.
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = PrintableStream(sys.stdout), PrintableStream(sys.stderr)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = saved


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OutputRefused as exc:  # a path from --out or from data may hold a newline: one line per problem still
        for line in exc.problems:
            print(f"error: {printable(line, one_line=True)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        # --out on a file, /dev/null or a read-only place; an unreadable input: one line, not a traceback.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {printable(f'{where}{exc.strerror or exc}', one_line=True)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
