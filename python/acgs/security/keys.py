"""API keys: generated tokens (``acgs_<id>_<secret>``), stored only as SHA-256 hashes with their
id, name, roles and times, in SQLite (default, under the data directory) or PostgreSQL (several
nodes share one set of keys).

A plain SHA-256 is the right hash here, not a slow password hash: the tokens carry 256 random
bits, so there is nothing to guess, and the services look a key up on every request."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from acgs.errors import AcgsError
from acgs.security.principal import ROLES

#: Every key starts with this, so secret scanners and people recognise one.
PREFIX = "acgs_"
_ID_BYTES = 6
_SECRET_BYTES = 32

_SCHEMA = """
CREATE TABLE IF NOT EXISTS acgs_api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    roles TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION
)
"""


class ApiKeyError(AcgsError):
    """A key operation was refused (unknown id, bad role, unusable store)."""

    code = "api_key_error"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key as stored: never the token itself."""

    id: str
    name: str
    key_hash: str
    roles: frozenset[str]
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "roles": sorted(self.roles),
            "created_at": _iso(self.created_at),
            "revoked_at": _iso(self.revoked_at) if self.revoked_at is not None else None,
        }


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def looks_like_key(token: str) -> bool:
    return token.startswith(PREFIX)


def new_token() -> tuple[str, str]:
    """A fresh (key id, token)."""
    key_id = secrets.token_hex(_ID_BYTES)
    return key_id, f"{PREFIX}{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"


def checked_roles(roles: list[str] | tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    found = frozenset(r.strip().lower() for r in roles if r.strip())
    unknown = sorted(found.difference(ROLES))
    if unknown:
        raise ApiKeyError(f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}")
    if not found:
        raise ApiKeyError(f"a key needs at least one role among {', '.join(ROLES)}")
    return found


class KeyStore(Protocol):
    """Where keys live. Services only call ``active``; the CLI calls the rest."""

    async def add(self, key: ApiKey) -> None: ...

    async def all(self) -> list[ApiKey]: ...

    async def revoke(self, key_id: str, at: float) -> ApiKey: ...

    async def active(self) -> dict[str, ApiKey]:
        """Active keys by hash."""
        ...


def _row(row: tuple[Any, ...] | Any) -> ApiKey:
    roles = frozenset(r for r in str(row[3]).split(",") if r)
    return ApiKey(str(row[0]), str(row[1]), str(row[2]), roles, float(row[4]), None if row[5] is None else float(row[5]))


class SqliteKeyStore:
    """Keys in one SQLite file (created with its directory on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10)
        conn.execute(_SCHEMA)
        return conn

    def _add(self, key: ApiKey) -> None:
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO acgs_api_keys (id, name, key_hash, roles, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)",
                (key.id, key.name, key.key_hash, ",".join(sorted(key.roles)), key.created_at, key.revoked_at),
            )
        conn.close()

    def _all(self) -> list[ApiKey]:
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT id, name, key_hash, roles, created_at, revoked_at FROM acgs_api_keys ORDER BY created_at, id"
            ).fetchall()
        finally:
            conn.close()
        return [_row(r) for r in rows]

    def _revoke(self, key_id: str, at: float) -> ApiKey:
        conn = self._connect()
        try:
            with conn:
                conn.execute("UPDATE acgs_api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (at, key_id))
                row = conn.execute(
                    "SELECT id, name, key_hash, roles, created_at, revoked_at FROM acgs_api_keys WHERE id = ?", (key_id,)
                ).fetchone()
        finally:
            conn.close()
        if row is None:
            raise ApiKeyError(f"no API key with id {key_id!r}")
        return _row(row)

    async def add(self, key: ApiKey) -> None:
        await asyncio.to_thread(self._add, key)

    async def all(self) -> list[ApiKey]:
        return await asyncio.to_thread(self._all)

    async def revoke(self, key_id: str, at: float) -> ApiKey:
        return await asyncio.to_thread(self._revoke, key_id, at)

    async def active(self) -> dict[str, ApiKey]:
        return {k.key_hash: k for k in await self.all() if k.active}


class PostgresKeyStore:
    """Keys in PostgreSQL (asyncpg), one connection per operation: the services only read the
    table every few seconds."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def _connect(self) -> Any:
        import asyncpg

        conn = await asyncpg.connect(self.url)
        await conn.execute(_SCHEMA)
        return conn

    async def add(self, key: ApiKey) -> None:
        conn = await self._connect()
        try:
            await conn.execute(
                "INSERT INTO acgs_api_keys (id, name, key_hash, roles, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)",
                key.id, key.name, key.key_hash, ",".join(sorted(key.roles)), key.created_at, key.revoked_at,
            )  # fmt: skip
        finally:
            await conn.close()

    async def all(self) -> list[ApiKey]:
        conn = await self._connect()
        try:
            rows = await conn.fetch(
                "SELECT id, name, key_hash, roles, created_at, revoked_at FROM acgs_api_keys ORDER BY created_at, id"
            )
        finally:
            await conn.close()
        return [_row(tuple(r)) for r in rows]

    async def revoke(self, key_id: str, at: float) -> ApiKey:
        conn = await self._connect()
        try:
            await conn.execute("UPDATE acgs_api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL", at, key_id)
            row = await conn.fetchrow(
                "SELECT id, name, key_hash, roles, created_at, revoked_at FROM acgs_api_keys WHERE id = $1", key_id
            )
        finally:
            await conn.close()
        if row is None:
            raise ApiKeyError(f"no API key with id {key_id!r}")
        return _row(tuple(row))

    async def active(self) -> dict[str, ApiKey]:
        return {k.key_hash: k for k in await self.all() if k.active}


def open_key_store(url: str) -> KeyStore:
    """``sqlite:///path`` or ``postgresql://...``."""
    if url.startswith("sqlite:///"):
        return SqliteKeyStore(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresKeyStore(url)
    raise ApiKeyError(f"key store {url!r}: use sqlite:///path or postgresql://...")


async def create_key(store: KeyStore, name: str, roles: list[str] | tuple[str, ...] | frozenset[str]) -> tuple[ApiKey, str]:
    """Stores a new key and returns it with its token: the only time the token exists."""
    name = name.strip()
    if not name:
        raise ApiKeyError("a key needs a name (the principal it stands for)")
    key_id, token = new_token()
    key = ApiKey(key_id, name, hash_token(token), checked_roles(roles), time.time())
    await store.add(key)
    return key, token


async def revoke_key(store: KeyStore, key_id: str) -> ApiKey:
    return await store.revoke(key_id, time.time())
