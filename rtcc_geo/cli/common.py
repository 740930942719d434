"""Options and helpers every command shares (store selection, JSON output, progress)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ..store import DEFAULT_STORE_DIR, Store, open_store


def add_store_args(p: argparse.ArgumentParser) -> None:
    """``--db URL`` (or ``$RTCC_DATABASE_URL``) for PostGIS, else ``--store DIR``."""
    g = p.add_argument_group("store (where incidents live)")
    g.add_argument("--db", metavar="URL", default=None,
                   help="PostGIS connection URL (default: $RTCC_DATABASE_URL). Given, it wins over --store.")
    g.add_argument("--store", metavar="DIR", default=None,
                   help=f"embedded store directory, no server needed (default: $RTCC_STORE_DIR or {DEFAULT_STORE_DIR})")


def store_from_args(args: argparse.Namespace) -> Store:
    db = args.db or (None if args.store else os.environ.get("RTCC_DATABASE_URL"))
    return open_store(db=db, store_dir=args.store)


def add_json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a machine-readable JSON summary on stdout")


def emit_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def progress_enabled() -> bool:
    """Progress bars go to stderr, and only when it is a terminal (quiet in CI logs)."""
    return sys.stderr.isatty() and not os.environ.get("RTCC_NO_PROGRESS")


class UserError(Exception):
    """An error the user can fix; printed without a traceback, exit code 2."""
