"""``python -m app.keys``: create, list and revoke API keys in the server's database.

Reads the same ``RESTORE_*`` settings as the server, so it acts on the database the server
uses. ``create`` prints the key once; only its hash is stored.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from workers.api_keys import SCOPES, ApiKeys
from workers.errors import RestoreError
from workers.settings import get_settings
from workers.store import DEFAULT_TENANT, Store


def _when(seconds: float | None) -> str:
    return "-" if seconds is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def _row(key: dict[str, Any]) -> str:
    state = "revoked" if key["revoked_at"] else "active"
    if state == "active" and key["expires_at"] and key["expires_at"] <= time.time():
        state = "expired"
    cells = [key["id"], key["tenant"], ",".join(key["scopes"]), state, _when(key["created_at"])]
    cells += [_when(key["expires_at"]), _when(key["last_used_at"]), key["name"]]
    return "\t".join(cells)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app.keys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--name", required=True, help="who or what uses it, e.g. lims")
    create.add_argument("--scopes", required=True, help=f"comma-separated: {', '.join(SCOPES)}")
    create.add_argument("--tenant", default=DEFAULT_TENANT)
    create.add_argument("--expires-days", type=float, default=None)
    commands.add_parser("list", help="every key: id, tenant, scopes, state, dates, name")
    revoke = commands.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; 0 on success, 1 with a message on stderr otherwise."""
    args = _parser().parse_args(argv)
    store = Store(get_settings().resolved_database_url)
    keys = ApiKeys(store)
    try:
        if args.command == "create":
            scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
            record, token = keys.create(args.name, scopes, args.tenant, args.expires_days)
            print(
                f"created key {record['id']} ({','.join(record['scopes'])}, tenant "
                f"{record['tenant']}); it is shown only now:\n{token}"
            )
        elif args.command == "list":
            print("id\ttenant\tscopes\tstate\tcreated\texpires\tlast used\tname")
            for key in keys.all():
                print(_row(key))
        else:
            print(f"revoked key {keys.revoke(args.id)['id']}")
    except RestoreError as error:
        print(error.message, file=sys.stderr)
        return 1
    finally:
        store.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
