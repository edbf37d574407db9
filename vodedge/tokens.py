"""Path tokens (DESIGN.md): ``{kid}.{expires_unix}.{sig}``, one token per title.

sig = base64url(HMAC-SHA256(key[kid], "v1|/v/{video_id}/|{expires_unix}")), no padding.
The control plane signs; appliances verify with every configured kid (rotation).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from enum import Enum


class TokenVerdict(Enum):
    OK = "ok"
    MALFORMED = "malformed"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"


def _message(video_id: str, expires: int) -> bytes:
    return f"v1|/v/{video_id}/|{expires}".encode()


def _sig(secret: bytes, video_id: str, expires: int) -> str:
    mac = hmac.new(secret, _message(video_id, expires), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def sign(kid: str, secret: bytes, video_id: str, expires: int) -> str:
    if "." in kid or "/" in kid or not kid:
        raise ValueError("kid must be non-empty and contain no '.' or '/'")
    return f"{kid}.{expires}.{_sig(secret, video_id, expires)}"


def verify(token: str, video_id: str, keys: Mapping[str, bytes], now: float) -> TokenVerdict:
    parts = token.split(".")
    if len(parts) != 3 or not (parts[1].isascii() and parts[1].isdigit()) or len(parts[1]) > 12:
        return TokenVerdict.MALFORMED
    kid, exp_s, sig = parts
    secret = keys.get(kid)
    if secret is None:
        return TokenVerdict.UNKNOWN_KEY
    expires = int(exp_s)
    if not hmac.compare_digest(_sig(secret, video_id, expires), sig):
        return TokenVerdict.BAD_SIGNATURE
    if expires < now:
        return TokenVerdict.EXPIRED
    return TokenVerdict.OK
