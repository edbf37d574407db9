"""``Authorization: Bearer <token>`` checks (RFC 6750), shared by the appliance admin API and the
origin API.

Tokens are compared as SHA-256 digests with :func:`hmac.compare_digest`, so the time a check
takes says nothing about the token: neither how much of it matched nor how long it is. Every
configured token is compared, whichever matches.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

REALM = "vodedge"


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None (absent, other scheme,
    empty)."""
    if authorization is None:
        return None
    scheme, _, given = authorization.partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        return None
    return given


def bearer_ok(authorization: str | None, tokens: str | Iterable[str]) -> bool:
    """Whether the header carries one of ``tokens`` (one token or several); empty ones never
    match, so an empty configuration refuses everything."""
    given = bearer_token(authorization)
    if given is None or not given.isascii():
        # Tokens are ASCII; a header with other bytes (aiohttp keeps them as surrogates, which
        # would not even encode) is simply a wrong token.
        return False
    wanted = (tokens,) if isinstance(tokens, str) else tuple(tokens)
    digest = hashlib.sha256(given.encode()).digest()
    ok = False
    for token in wanted:
        same = hmac.compare_digest(digest, hashlib.sha256(token.encode()).digest())
        ok |= same and bool(token)
    return ok


def challenge(realm: str = REALM, *, token_given: bool = False) -> str:
    """The ``WWW-Authenticate`` value of a 401: ``invalid_token`` when a token was sent."""
    value = f'Bearer realm="{realm}"'
    return value + ', error="invalid_token"' if token_given else value
