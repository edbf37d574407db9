"""Who may call what: each route is open, a read, or a write; reads and writes need one of the
configured bearer tokens (``api.tokens``), except reads of the catalog when ``api.public_read``.

An empty token list refuses every call that needs a token. A token that is given must be
right, on every route that is not open: with ``api.public_read`` a request without a token is
an anonymous reader, one with a wrong token is refused (RFC 6750 ``invalid_token``), so that a
handler can tell the two apart with :func:`anonymous` alone. The decision is pure; the
middleware in :mod:`origin.api.app` applies it before any handler runs, so a refused request
changes nothing.
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
    if access is Access.OPEN:
        return
    given = bearer_token(authorization) is not None
    if access is Access.PUBLIC_READ and public_read and not given:
        return
    if bearer_ok(authorization, tokens):
        return
    raise ApiError(
        401,
        "unauthorized",
        "wrong bearer token" if given else "this call needs Authorization: Bearer <token>",
        headers={"WWW-Authenticate": challenge(REALM, token_given=given)},
    )


def anonymous(authorization: str | None) -> bool:
    """Whether a request that :func:`check` let through came without a token (an anonymous
    reader of a ``public_read`` catalog); one with a token passed only if it was right."""
    return bearer_token(authorization) is None
