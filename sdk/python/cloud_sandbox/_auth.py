"""Access-token life cycle: issue, renew before expiry, fall back to a new token.

Access tokens are short-lived (15 minutes by default); the refresh token,
rotated on every use, keeps a client going. The token state sits behind one
lock; the thread that finds the token expiring renews it while the others
wait, so a burst of requests renews once.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from typing import Any, Callable, Dict, Optional

from . import errors
from ._transport import Response, TokenSource, Transport

logger = logging.getLogger("cloud_sandbox")

TOKEN_PATH = "/api/v1/auth/token"
REFRESH_PATH = "/api/v1/auth/refresh"
# The server's error for an access token past its exp (api/auth.go).
EXPIRED_MESSAGE = "token expired"


def jwt_claims(token: str) -> Dict[str, Any]:
    """Decodes a JWT's payload WITHOUT verifying it (only to read ``exp``); {} when unreadable."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, UnicodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


class TokenManager(TokenSource):
    """Holds the access and refresh tokens of one client and keeps them fresh.

    With ``user_id`` (development mode) or ``api_key`` (production mode) it can
    get new tokens by itself. With ``token`` and ``refresh_token`` (a pair from
    the token endpoint) it refreshes the pair until the server refuses the
    refresh token, then raises :class:`AuthenticationError`. With only a fixed
    ``token`` it uses that token as given and a 401 is final.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        user_id: Optional[str] = None,
        api_key: Optional[str] = None,
        role: Optional[str] = None,
        token: Optional[str] = None,
        refresh_token: Optional[str] = None,
        refresh_margin: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._transport = transport
        self._user_id = user_id
        self._api_key = api_key
        self._role = role
        self._static = token
        self.refresh_margin = refresh_margin
        self.clock = clock
        self._credentials = bool(user_id or api_key)
        self.can_renew = self._credentials or bool(refresh_token)
        self._lock = threading.Lock()
        self._access: Optional[str] = None
        self._refresh: Optional[str] = refresh_token
        self._exp: Optional[float] = None
        self._iat: Optional[float] = None
        self._stale = False

    def token(self) -> Optional[str]:
        """Returns a valid access token, getting or renewing one first when needed."""
        with self._lock:
            if self._access is None:
                self._issue()
            # A token given to the client may be near its end already.
            if self._access is not None and self._expiring(self.clock()):
                self._renew()
            return self._access

    def renews_after(self, refusal: errors.SandboxError) -> bool:
        """One renewal after a 401: always with credentials (a new token can be had whatever
        the reason), with only a refresh token when the access token expired."""
        if self._credentials:
            return True
        return bool(self._refresh) and refusal.message == EXPIRED_MESSAGE

    def invalidate(self, used: str) -> None:
        """Marks ``used`` as refused; the next token() renews it (unless another thread already did)."""
        with self._lock:
            if self._access == used:
                self._stale = True

    def _expiring(self, now: float) -> bool:
        if self._stale:
            return True
        if self._exp is None:
            return False
        margin = self.refresh_margin
        if self._iat is not None and self._exp > self._iat:
            # A short-lived token is renewed at half its life, not constantly.
            margin = min(margin, (self._exp - self._iat) / 2)
        return now >= self._exp - margin

    def _renew(self) -> None:
        if not self.can_renew:
            self._stale = False
            return
        if self._refresh:
            try:
                self._store(self._post(REFRESH_PATH, {"refresh_token": self._refresh}))
                logger.debug("access token refreshed")
                return
            except (errors.AuthenticationError, errors.ValidationError) as e:
                if not self._credentials:
                    raise errors.AuthenticationError(
                        f"the server refused the refresh token ({e.message}), so the access token cannot be "
                        f"renewed; get a new token pair from POST {TOKEN_PATH}, or give the client user_id= or api_key=",
                        status=e.status, code=e.code, method="POST", path=REFRESH_PATH) from e
                # Revoked, expired or rotated away: start over with a new token.
                logger.info("refresh token refused (%s); requesting a new token", e.message)
            except errors.SandboxError:
                if not self._stale and self._exp is not None and self.clock() < self._exp:
                    logger.warning("token refresh failed; the current token is still valid", exc_info=True)
                    return
                raise
        self._issue()

    def _issue(self) -> None:
        if not self._credentials:
            if self._static is None and self._refresh:
                # Only a refresh token: buy the first pair with it.
                self._stale = True
                self._renew()
                return
            self._access = self._static
            self._stale = False
            if self._static:
                self._read_claims(self._static, None)
            return
        body: Dict[str, Any] = {}
        if self._user_id:
            body["user_id"] = self._user_id
        if self._role:
            body["role"] = self._role
        if self._api_key:
            body["api_key"] = self._api_key
        self._store(self._post(TOKEN_PATH, body))

    def _post(self, path: str, body: Dict[str, Any]) -> Dict[str, Any]:
        resp = self._transport.request("POST", path, json_body=body, auth=False, resend_safe=True)
        assert isinstance(resp, Response)
        doc = resp.json()
        if not isinstance(doc, dict) or not isinstance(doc.get("access_token"), str) or not doc["access_token"]:
            raise errors.ServerError(f"response to POST {path} has no access_token",
                                     status=resp.status, method="POST", path=path)
        return doc

    def _store(self, doc: Dict[str, Any]) -> None:
        self._access = doc["access_token"]
        refresh = doc.get("refresh_token")
        if isinstance(refresh, str) and refresh:
            self._refresh = refresh
        self._stale = False
        self._read_claims(self._access, doc.get("expires_in"))

    def _read_claims(self, token: str, expires_in: Any) -> None:
        claims = jwt_claims(token)
        exp, iat = claims.get("exp"), claims.get("iat")
        self._exp = float(exp) if isinstance(exp, (int, float)) else None
        self._iat = float(iat) if isinstance(iat, (int, float)) else None
        if self._exp is None and expires_in is not None:
            try:
                now = self.clock()
                self._exp, self._iat = now + float(expires_in), now
            except (TypeError, ValueError):
                pass
