"""SQLite connections whose every query turns page-level damage into a one-line :class:`StoreError`.

SQLite finds a damaged page only when a query reads it, which may be long after the file opened
(a search, a resume, a sync). Both stores connect through :func:`connect`, so the error at any query,
from any caller, names the store and the command that repairs it instead of a raw
``sqlite3.DatabaseError`` traceback. Other database errors (locked, constraint) pass unchanged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import StoreError

_T = TypeVar("_T")

# primary result codes of a damaged file: SQLITE_CORRUPT (and its extended codes, e.g. an FTS index's),
# SQLITE_NOTADB (a page 1 that is not SQLite's)
_DAMAGE_CODES = (11, 26)


def is_damage(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite saying the file is damaged (not locked, full, or a constraint)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _DAMAGE_CODES
    text = str(exc)
    return "malformed" in text or "not a database" in text


class GuardedConnection(sqlite3.Connection):
    """A connection whose queries raise :class:`StoreError` (``what`` is damaged; ``fix``) on damage."""

    what: str = "the database"
    fix: str = "move it aside"

    def damaged(self, exc: sqlite3.DatabaseError) -> StoreError:
        return StoreError(f"{self.what} is damaged and cannot be read ({exc}); {self.fix}")

    def guard(self, call: Callable[..., _T], *args: Any) -> _T:
        try:
            return call(*args)
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise self.damaged(exc) from None
            raise

    def cursor(self, factory: Any = None) -> Any:  # every cursor is a guarded one
        return super().cursor(GuardedCursor)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Any:
        return self.cursor().executemany(sql, parameters)

    def executescript(self, script: str, /) -> Any:
        return self.cursor().executescript(script)


class GuardedCursor(sqlite3.Cursor):
    """A cursor of a :class:`GuardedConnection`: fetching a row from a damaged page raises StoreError."""

    @property
    def connection_guard(self) -> GuardedConnection:
        connection = self.connection
        assert isinstance(connection, GuardedConnection)
        return connection

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.connection_guard.guard(super().execute, sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Any:
        return self.connection_guard.guard(super().executemany, sql, parameters)

    def executescript(self, script: str, /) -> Any:
        return self.connection_guard.guard(super().executescript, script)

    def fetchone(self) -> Any:
        return self.connection_guard.guard(super().fetchone)

    def fetchmany(self, size: int | None = None) -> list[Any]:
        return self.connection_guard.guard(super().fetchmany, self.arraysize if size is None else size)

    def fetchall(self) -> list[Any]:
        return self.connection_guard.guard(super().fetchall)

    def __next__(self) -> Any:
        return self.connection_guard.guard(super().__next__)


def connect(path: Path, *, what: str, fix: str, timeout: float = 30.0) -> GuardedConnection:
    """Open ``path`` in autocommit mode; damage found by any later query names ``what`` and ``fix``."""
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None, factory=GuardedConnection)
    assert isinstance(db, GuardedConnection)
    db.what, db.fix = what, fix
    return db
