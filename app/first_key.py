"""The first start's admin key: created when no key exists, written to a mode-600 file.

So the quick start needs one command: the server creates an admin key of tenant ``default``,
writes it to ``<data dir>/admin-api-key`` (readable by its owner only) and prints where it is,
never the key itself. A later start, with any key in the database, creates none.
"""

from __future__ import annotations

import os
from pathlib import Path

from workers.api_keys import ApiKeys
from workers.settings import Settings
from workers.store import DEFAULT_TENANT, Store

NAME = "admin (created on first start)"


def ensure_admin_key(store: Store, settings: Settings) -> bool:
    """Create and write the admin key unless a key exists; whether it did.

    A file left from an earlier database (its key unknown now) is replaced; one another API
    process of the deployment has just written keeps its key, and this one is revoked.
    """
    keys = ApiKeys(store)
    if keys.any_exist():
        return False
    path = settings.admin_key_file
    record, token = keys.create(NAME, ["admin"], DEFAULT_TENANT)
    if path.exists() and keys.verify(path.read_text().strip()) is not None:
        keys.revoke(record["id"])
        return False
    _write_private(path, token + "\n")
    print(
        f"First start: an admin API key (id {record['id']}) was written to {path} (mode 600).\n"
        f'Send it with each request:  KEY=$(cat {path}); curl -H "X-API-Key: $KEY" ...\n'
        "In the viewer, paste it into the API key field of the start page. More keys: "
        "python -m app.keys create --help",
        flush=True,
    )
    return True


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, replacing any (never readable by others)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(partial, path)
