"""``rtcc-geo users``: add, list, remove the commander app's users; change a
password or role; lift a lock-out. Every change ends the user's open sessions
and is written to the audit log (``rtcc-geo audit``).

Also here: the session and security flags of ``rtcc-geo serve``
(:func:`add_security_args`), passed on to the app through the environment so
every worker process of the server reads the same settings.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from .common import UserError, add_json_arg, add_store_args, emit_json, store_from_args


def register(subparsers) -> None:
    from ..auth import ROLES

    p = subparsers.add_parser(
        "users",
        help="manage who may log in to the commander app (roles: " + ", ".join(ROLES) + ")",
        description=(
            "Manage the users of the commander app ('rtcc-geo serve'). Users live in the store "
            "(table 'users') with salted scrypt password hashes. Roles: commander and analyst see "
            "everything incl. incident rows; planner sees the staffing page and aggregated map; "
            "viewer sees aggregated cells only."
        ),
    )
    sub = p.add_subparsers(dest="users_command", metavar="ACTION")

    a = sub.add_parser(
        "add",
        help="add a user (asks for the password)",
        description="Add a user. The password is asked twice on the terminal, or read "
        "from the first line of stdin with --password-stdin (for scripts). "
        "Passwords need 12 characters or more and must not be a common one.",
    )
    a.add_argument("username")
    a.add_argument("--role", required=True, choices=ROLES, help="what the user may see")
    a.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    a.add_argument("--replace", action="store_true", help="change an existing user's password/role")
    add_store_args(a)
    add_json_arg(a)
    a.set_defaults(func=_add)

    def action(name: str, func, help_: str, *, user: bool = True):
        sp = sub.add_parser(name, help=help_)
        if user:
            sp.add_argument("username")
        add_store_args(sp)
        add_json_arg(sp)
        sp.set_defaults(func=func)
        return sp

    action("list", _list, "list users and roles (never the hashes)", user=False)
    action("remove", _remove, "remove a user (their open sessions end at once)")
    action("passwd", _passwd, "change a user's password (their open sessions end at once)").add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    action("role", _role, "change a user's role (their open sessions end at once)").add_argument(
        "--role", required=True, choices=ROLES
    )
    action("unlock", _unlock, "lift the lock-out after too many failed log-ins")

    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _read_password(args) -> str:
    if args.password_stdin:
        pw = sys.stdin.readline().rstrip("\r\n")
        if not pw:
            raise UserError("no password on stdin")
        return pw
    if not sys.stdin.isatty():
        raise UserError("no terminal to ask the password on: pipe it in with --password-stdin")
    pw = getpass.getpass(f"password for {args.username}: ")
    if pw != getpass.getpass("again: "):
        raise UserError("the two passwords differ")
    return pw


def _add(args) -> int:
    from ..auth import Users

    pw = _read_password(args)
    try:
        Users(store_from_args(args)).add(args.username, pw, args.role, replace=args.replace)
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.json:
        emit_json({"username": args.username, "role": args.role, "added": True})
    else:
        print(f"user {args.username} ({args.role}) saved", file=sys.stderr)
    return 0


def _list(args) -> int:
    from ..auth import Users

    df = Users(store_from_args(args)).list()
    if args.json:
        emit_json(
            [{"username": r.username, "role": r.role, "created_at": r.created_at.isoformat()} for r in df.itertuples()]
        )
    elif df.empty:
        print("no users; add one with: rtcc-geo users add NAME --role commander", file=sys.stderr)
    else:
        for r in df.itertuples():
            print(f"{r.username}\t{r.role}\t{r.created_at:%Y-%m-%d %H:%M}Z")
    return 0


def _remove(args) -> int:
    from ..auth import Users

    ok = Users(store_from_args(args)).remove(args.username)
    if args.json:
        emit_json({"username": args.username, "removed": ok})
    if not ok:
        raise UserError(f"no user {args.username!r} (see 'rtcc-geo users list')")
    if not args.json:
        print(f"user {args.username} removed", file=sys.stderr)
    return 0


def _passwd(args) -> int:
    from ..auth import Users

    pw = _read_password(args)
    try:
        Users(store_from_args(args)).set_password(args.username, pw)
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.json:
        emit_json({"username": args.username, "password_changed": True})
    else:
        print(f"password of {args.username} changed; their open sessions ended", file=sys.stderr)
    return 0


def _role(args) -> int:
    from ..auth import Users

    try:
        Users(store_from_args(args)).set_role(args.username, args.role)
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.json:
        emit_json({"username": args.username, "role": args.role})
    else:
        print(f"{args.username} is now {args.role}; their open sessions ended", file=sys.stderr)
    return 0


def _unlock(args) -> int:
    from ..auth import Users

    users = Users(store_from_args(args))
    if users.role(args.username) is None:
        raise UserError(f"no user {args.username!r} (see 'rtcc-geo users list')")
    users.unlock(args.username)
    if args.json:
        emit_json({"username": args.username, "unlocked": True})
    else:
        print(f"{args.username} may log in again", file=sys.stderr)
    return 0


# --- flags of 'rtcc-geo serve' -------------------------------------------------


def add_security_args(p: argparse.ArgumentParser) -> None:
    """Session, cookie, proxy, feed-token and suppression flags of ``serve``."""
    g = p.add_argument_group("sessions and security")
    g.add_argument(
        "--session-hours",
        type=float,
        default=None,
        metavar="H",
        help="a log-in lasts at most this long, active or not (default 12: one shift; $RTCC_SESSION_HOURS)",
    )
    g.add_argument(
        "--idle-minutes",
        type=float,
        default=None,
        metavar="M",
        help="a session ends after this long without a request (default 60; $RTCC_IDLE_MINUTES)",
    )
    g.add_argument(
        "--secure-cookies",
        action="store_true",
        help="send cookies over https only (set this when a TLS proxy is in front; $RTCC_SECURE_COOKIES)",
    )
    g.add_argument(
        "--trust-proxy",
        action="store_true",
        help="believe X-Forwarded-Proto/-For/-Host from ONE reverse proxy in front (https is then "
        "detected and cookies marked Secure, client addresses are the real ones); "
        "never set it without such a proxy ($RTCC_TRUST_PROXY)",
    )
    g.add_argument(
        "--feed-token-file",
        default=None,
        metavar="PATH",
        help="feed tokens, one 'source=token' per line ($RTCC_FEED_TOKEN_FILE); also "
        "$RTCC_FEED_TOKENS='source=token,...' or $RTCC_FEED_TOKEN. A token opens its own "
        "source only. Prefer these to --feed-token, which anyone on the machine sees in 'ps'",
    )
    g.add_argument(
        "--suppress-k",
        type=int,
        default=None,
        metavar="K",
        help="viewers and planners never see a count below K: 'fewer than K' instead "
        "(default 5, or the agency's suppress_k; $RTCC_SUPPRESS_K)",
    )


def apply_security_args(args: argparse.Namespace) -> None:
    """Hand the flags to the app (and every worker process) through the environment."""
    for flag, var in (("session_hours", "RTCC_SESSION_HOURS"), ("idle_minutes", "RTCC_IDLE_MINUTES")):
        v = getattr(args, flag, None)
        if v is not None:
            if not v > 0:
                raise UserError(f"--{flag.replace('_', '-')} must be positive")
            os.environ[var] = repr(float(v))
    for flag, var in (("secure_cookies", "RTCC_SECURE_COOKIES"), ("trust_proxy", "RTCC_TRUST_PROXY")):
        if getattr(args, flag, False):
            os.environ[var] = "1"
    path = getattr(args, "feed_token_file", None)
    if path:
        if not os.path.isfile(path):
            raise UserError(f"no feed token file {path}")
        os.environ["RTCC_FEED_TOKEN_FILE"] = os.path.abspath(path)
    k = getattr(args, "suppress_k", None)
    if k is not None:
        if k < 1:
            raise UserError("--suppress-k must be 1 or more")
        os.environ["RTCC_SUPPRESS_K"] = str(int(k))
