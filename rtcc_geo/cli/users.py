"""``rtcc-geo users``: add, list and remove the commander app's users."""

from __future__ import annotations

import getpass
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

    a = sub.add_parser("add", help="add a user (asks for the password)",
                       description="Add a user. The password is asked twice on the terminal, or read "
                                   "from the first line of stdin with --password-stdin (for scripts).")
    a.add_argument("username")
    a.add_argument("--role", required=True, choices=ROLES, help="what the user may see")
    a.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    a.add_argument("--replace", action="store_true", help="change an existing user's password/role")
    add_store_args(a)
    add_json_arg(a)
    a.set_defaults(func=_add)

    ls = sub.add_parser("list", help="list users and roles (never the hashes)")
    add_store_args(ls)
    add_json_arg(ls)
    ls.set_defaults(func=_list)

    rm = sub.add_parser("remove", help="remove a user (their open sessions end within seconds)")
    rm.add_argument("username")
    add_store_args(rm)
    add_json_arg(rm)
    rm.set_defaults(func=_remove)

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
        emit_json([{"username": r.username, "role": r.role, "created_at": r.created_at.isoformat()}
                   for r in df.itertuples()])
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
