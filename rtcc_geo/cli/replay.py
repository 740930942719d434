"""``rtcc-geo replay``: stream a historical extract into the live feed as if it were live."""

from __future__ import annotations

import argparse
import os

from .common import UserError, add_json_arg, emit_json, progress_enabled


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay",
        help="stream historical incidents into a running feed at N times real time",
        description=(
            "Read FILES with an ingest reader, order the incidents by time and POST them to a running "
            "rtcc-geo server's feed (/api/feed/SOURCE/incidents) at --speed times real time. Batches are "
            "re-sent until the feed accepts them (at-least-once; the feed is idempotent by incident id), "
            "so a server or database restart during a replay loses and duplicates nothing."
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="extract files (CSV) in the --format")
    p.add_argument(
        "--format",
        required=True,
        choices=["philadelphia", "vancouver", "chicago", "generic"],
        help="reader to use (as for 'rtcc-geo ingest')",
    )
    p.add_argument("--mapping", metavar="FILE", help="mapping TOML for --format generic")
    p.add_argument("--agency", metavar="NAME|FILE", help="agency config (default: the format's)")
    p.add_argument(
        "--speed", default="60x", help="replay speed: '60x' = an hour of history a minute; 'max' (default 60x)"
    )
    p.add_argument(
        "--url",
        default=os.environ.get("RTCC_URL", "http://127.0.0.1:8050"),
        help="base URL of the rtcc-geo server (default $RTCC_URL or http://127.0.0.1:8050)",
    )
    p.add_argument(
        "--token", default=os.environ.get("RTCC_FEED_TOKEN"), help="feed bearer token (default $RTCC_FEED_TOKEN)"
    )
    p.add_argument("--from", dest="start", metavar="DATE", help="first local date-time replayed")
    p.add_argument("--to", dest="end", metavar="DATE", help="replay up to this local date-time (exclusive)")
    p.add_argument("--limit", type=int, metavar="N", help="replay at most N incidents")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..live.replay import load_records, parse_speed, replay

    if not args.token:
        raise UserError("no feed token: pass --token or set RTCC_FEED_TOKEN (the server's feed token)")
    try:
        parse_speed(args.speed)
    except ValueError as e:
        raise UserError(str(e)) from None
    source, records = load_records(
        args.format,
        args.files,
        agency=args.agency,
        mapping=args.mapping,
        start=args.start,
        end=args.end,
        limit=args.limit,
    )
    if not records:
        raise UserError("nothing to replay: the files hold no incident in the --from/--to window")
    try:
        rep = replay(records, source, args.url, args.token, speed=args.speed, progress=progress_enabled())
    except RuntimeError as e:
        raise UserError(str(e)) from None
    if args.json:
        emit_json(rep.as_dict())
    else:
        print(
            f"replayed {rep.sent:,} {source} incidents in {rep.seconds:.1f} s: {rep.loaded:,} loaded "
            f"({rep.duplicates:,} already stored), {rep.quarantined:,} quarantined {rep.by_reason}, "
            f"{rep.retries} retries"
        )
    return 0
