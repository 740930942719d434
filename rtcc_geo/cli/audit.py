"""``rtcc-geo audit``: read the audit log of a store (read-only).

The log (:mod:`rtcc_geo.auth_store`) holds one entry per log-in, failed
log-in, lock-out, log-out, drill-down that returned incident rows, export,
alert acknowledgement, user or role change and feed batch. Nothing here, nor
in the app, edits or removes an entry.
"""

from __future__ import annotations

import argparse
import os
import sys

import pandas as pd

from .common import UserError, add_json_arg, add_store_args, emit_json, store_from_args


def register(sub: argparse._SubParsersAction) -> None:
    from ..auth_store import ACTIONS

    p = sub.add_parser(
        "audit",
        help="read the audit log (log-ins, drill-downs, exports, user changes, feed batches)",
        description="Print the audit log of the store, oldest first. Times are UTC unless they carry "
        "an offset; a bare date for --to includes that whole day. Exit code 2 when no "
        "entry matches.",
    )
    add_store_args(p)
    p.add_argument(
        "--from",
        dest="start",
        metavar="TIME",
        default=None,
        help="first time, inclusive (e.g. 2026-11-01 or 2026-11-01T08:00)",
    )
    p.add_argument(
        "--to", dest="end", metavar="TIME", default=None, help="last time (a bare date: to the end of that day)"
    )
    p.add_argument("--user", default=None, help="only this user (feed batches: feed:SOURCE#N)")
    p.add_argument("--action", choices=ACTIONS, default=None, help="only this kind of entry")
    add_json_arg(p)
    p.set_defaults(func=run)


def _time(text: str | None, flag: str, end: bool = False) -> pd.Timestamp | None:
    if text is None:
        return None
    try:
        t = pd.Timestamp(text)
    except ValueError:
        raise UserError(f"{flag} {text!r} is not a date or time (use YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from None
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    if end and len(text.strip()) == 10:  # a bare date: the whole day
        t += pd.Timedelta(days=1)
    return t


def run(args: argparse.Namespace) -> int:
    from ..auth_store import records_for

    start, end = _time(args.start, "--from"), _time(args.end, "--to", end=True)
    if start is not None and end is not None and start >= end:
        raise UserError(f"--from {args.start} is not before --to {args.end}")
    if not args.db and not os.environ.get("RTCC_DATABASE_URL") and args.store and not os.path.isdir(args.store):
        raise UserError(f"no store directory {args.store}")
    df = records_for(store_from_args(args)).read_audit(start, end, args.user)
    if args.action:
        df = df[df["action"] == args.action]
    if df.empty:
        who = f" for user {args.user}" if args.user else ""
        raise UserError(f"no audit entries from {args.start or 'the start'} to {args.end or 'now'}{who}")
    if args.json:
        emit_json(
            [
                {"at": t.isoformat(), "user": u, "action": a, "address": ad, "detail": d}
                for t, u, a, ad, d in zip(df["at"], df["user"], df["action"], df["address"], df["detail"])
            ]
        )
        return 0
    for t, u, a, ad, d in zip(df["at"], df["user"], df["action"], df["address"], df["detail"]):
        detail = " ".join(f"{k}={v}" for k, v in sorted((d or {}).items()))
        print(f"{t:%Y-%m-%d %H:%M:%S}Z\t{u or '-'}\t{a}\t{ad or '-'}\t{detail}")
    print(f"{len(df):,} entries", file=sys.stderr)
    return 0
