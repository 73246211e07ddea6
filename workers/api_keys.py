"""API keys: created with a scope set and a tenant, stored hashed, expiring, revocable.

A key reads ``rsk_<id>_<secret>``. The id is public (listed, logged); only the SHA-256 of the
secret is stored, and a presented secret is compared with ``hmac.compare_digest``. The full key
is shown once, when it is created.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from typing import Any

import sqlalchemy as sa

from workers.errors import InvalidInput, NotFound
from workers.store import Store, api_keys

PREFIX = "rsk_"
NAME_MAX = 128
SCOPES = ("read", "submit", "admin")
IMPLIED = {"read": {"read"}, "submit": {"read", "submit"}, "admin": {"read", "submit", "admin"}}
TENANT = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
TOKEN = re.compile(r"^rsk_([0-9a-f]{16})_([A-Za-z0-9_-]{20,100})$")
LAST_USED_EVERY_S = 60.0  # how often a key's last use is written (not on every request)
PUBLIC = [c for c in api_keys.c if c.name != "secret_hash"]


def granted(scopes: list[str]) -> frozenset[str]:
    """Every scope a key's scopes give: admin implies submit, submit implies read."""
    return frozenset().union(*(IMPLIED[s] for s in scopes if s in IMPLIED))


def check_tenant(tenant: str) -> str:
    """A tenant name: 1 to 32 of a-z, 0-9, '.', '_', '-', starting with a letter or digit."""
    if not TENANT.match(tenant):
        raise InvalidInput(
            "tenant must be 1 to 32 lower-case letters, digits, '.', '_' or '-', starting "
            "with a letter or digit"
        )
    return tenant


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeys:
    """The keys, in the store's database."""

    def __init__(self, store: Store) -> None:
        self.engine = store.engine

    def create(
        self, name: str, scopes: list[str], tenant: str, expires_in_days: float | None = None
    ) -> tuple[dict[str, Any], str]:
        """A new key: (its record without the hash, the full key to hand over once)."""
        if not 0 < len(name) <= NAME_MAX:
            raise InvalidInput(f"a key's name has 1 to {NAME_MAX} characters")
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise InvalidInput(f"scopes must be some of {', '.join(SCOPES)} (got {unknown})")
        now = time.time()
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        record = {
            "id": key_id,
            "tenant": check_tenant(tenant),
            "name": name,
            "scopes": sorted(set(scopes), key=SCOPES.index),
            "created_at": now,
            "expires_at": None if expires_in_days is None else now + expires_in_days * 86400,
            "revoked_at": None,
            "last_used_at": None,
        }
        with self.engine.begin() as conn:
            conn.execute(api_keys.insert().values(**record, secret_hash=_hash(secret)))
        return record, f"{PREFIX}{key_id}_{secret}"

    def all(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Every key (of ``tenant``, when given), oldest first, without hashes."""
        query = sa.select(*PUBLIC).order_by(api_keys.c.created_at)
        if tenant is not None:
            query = query.where(api_keys.c.tenant == tenant)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def get(self, key_id: str, tenant: str | None = None) -> dict[str, Any]:
        """One key without its hash (of ``tenant`` only, when given), or NotFound."""
        query = sa.select(*PUBLIC).where(api_keys.c.id == key_id)
        if tenant is not None:
            query = query.where(api_keys.c.tenant == tenant)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            raise NotFound(f"API key {key_id} does not exist")
        return dict(row)

    def revoke(self, key_id: str, tenant: str | None = None) -> dict[str, Any]:
        """Revoke a key at once (a revoked key stays listed); returns it."""
        self.get(key_id, tenant)
        with self.engine.begin() as conn:
            conn.execute(
                api_keys.update()
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
        return self.get(key_id)

    def any_exist(self) -> bool:
        """Whether any key was ever created."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(api_keys.c.id).limit(1)).first() is not None

    def verify(self, token: str) -> dict[str, Any] | None:
        """The record of a valid key (known, secret right, not expired or revoked), else None."""
        match = TOKEN.match(token)
        if match is None:
            return None
        key_id, secret = match.groups()
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).mappings()
            found = row.first()
        if found is None or not hmac.compare_digest(found["secret_hash"], _hash(secret)):
            return None
        now = time.time()
        if found["revoked_at"] is not None or (found["expires_at"] or now + 1) <= now:
            return None
        if now - (found["last_used_at"] or 0.0) > LAST_USED_EVERY_S:
            with self.engine.begin() as conn:
                conn.execute(
                    api_keys.update().where(api_keys.c.id == key_id).values(last_used_at=now)
                )
        return {k: v for k, v in found.items() if k != "secret_hash"}
