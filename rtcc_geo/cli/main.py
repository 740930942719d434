"""Entry point of ``rtcc-geo``: discovers the command modules in this package."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from .common import UserError

_NOT_COMMANDS = {"main", "common"}
#: Commands that serve HTTP: SIGPIPE stays ignored (a closed socket is an error for one request).
_SERVERS = frozenset({"serve", "demo"})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rtcc-geo",
        description=(
            "Geospatial analytics for Real Time Crime Centers: ingest open-data crime extracts, "
            "compute hot spots and temporal signatures on H3, forecast, plan deployments and "
            "staffing, and serve a commander map. Every command reads the embedded store "
            "(default, no server) or PostGIS (--db / $RTCC_DATABASE_URL)."
        ),
        epilog="Run 'rtcc-geo COMMAND --help' for a command's options.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    from .. import cli as pkg

    for m in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if m.name in _NOT_COMMANDS or m.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{pkg.__name__}.{m.name}")
        mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    import signal

    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if hasattr(signal, "SIGPIPE") and argv is None and command not in _SERVERS:
        # 'rtcc-geo ... | head' ends quietly, as Unix tools do; never a server,
        # which would die on its first write to a client that hung up.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        rc = args.func(args)
    except UserError as e:
        print(f"rtcc-geo {args.command}: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"rtcc-geo {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # store errors the user can act on, without a traceback
        from ..store.migrate import MigrationError
        from ..store.postgis import PostGISError

        if isinstance(e, (PostGISError, MigrationError)):
            print(f"rtcc-geo {args.command}: error: {e}", file=sys.stderr)
            return 2
        raise
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
