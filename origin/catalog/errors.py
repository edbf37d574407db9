"""The catalog's error tree; the HTTP layer maps each class to one status.

```
CatalogError            the database cannot be used: locked past the busy timeout, corrupt,
 │                      newer schema than this software (500/503)
 ├── NotFound           no such video, upload or job; a soft-deleted video counts as gone (404)
 ├── Conflict           the current state forbids it: duplicate id, wrong status, upload bytes
 │                      not at the received offset, checksum mismatch (409)
 └── Invalid            a bad argument or row: id pattern, empty title, bad path (400)
```

A worker that has lost its lease is not an error: ``extend``/``complete`` answer False and
``fail`` answers None, because losing a lease is a normal outcome of a slow or paused worker.
``sqlite3`` exceptions never leave the repository; they are mapped here, at its boundary.
"""

from __future__ import annotations

import sqlite3

# Constraint failures that mean "something with this identity exists already".
_DUPLICATE = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"})


class CatalogError(Exception):
    """The catalog database cannot do what was asked (maps to 500, or 503 when busy)."""


class NotFound(CatalogError):
    """No such video, upload or job (maps to 404)."""


class Conflict(CatalogError):
    """The row exists but its state forbids the operation (maps to 409)."""


class Invalid(CatalogError, ValueError):
    """An argument or row the schema rejects (maps to 400)."""


def from_sqlite(e: sqlite3.Error) -> CatalogError:
    """The catalog error for a ``sqlite3`` exception raised inside a transaction."""
    if isinstance(e, sqlite3.IntegrityError):
        if getattr(e, "sqlite_errorname", "") in _DUPLICATE:
            return Conflict(f"already exists: {e}")
        return Invalid(f"rejected by the schema: {e}")
    return CatalogError(f"catalog database: {e}")
