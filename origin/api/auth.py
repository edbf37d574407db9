"""Who may call what: each route is open, a read, or a write; reads and writes need one of the
configured bearer tokens (``api.tokens``), except reads of the catalog when ``api.public_read``.

An empty token list refuses every call that needs a token. The decision is pure; the middleware
in :mod:`origin.api.app` applies it before any handler runs, so a refused request changes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from origin.api.errors import ApiError
from vodedge.bearer import bearer_ok, bearer_token, challenge

REALM = "vodedge-origin"


class Access(enum.Enum):
    OPEN = "open"
    """No token: the API description."""
    PUBLIC_READ = "public_read"
    """Catalog reads (list, detail, search): open when ``api.public_read``, else a token."""
    TOKEN = "token"
    """Everything else: uploads, changes, job details."""


def check(
    access: Access, authorization: str | None, tokens: Sequence[str], public_read: bool
) -> None:
    """Return if the request may go on; raise the 401 otherwise."""
    if access is Access.OPEN or (access is Access.PUBLIC_READ and public_read):
        return
    if bearer_ok(authorization, tokens):
        return
    given = bearer_token(authorization) is not None
    raise ApiError(
        401,
        "unauthorized",
        "wrong bearer token" if given else "this call needs Authorization: Bearer <token>",
        headers={"WWW-Authenticate": challenge(REALM, token_given=given)},
    )
