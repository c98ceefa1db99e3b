"""API keys: who may call `/v1/*`, and the owner id their sessions and feedback belong to.

The keys come from the environment variable `serving.api_keys_env` (comma-separated), read when the app is created.
None set = an open API where every caller is the owner `anonymous`. With keys, a `/v1/*` request needs
`Authorization: Bearer <key>`: the token is compared with every key in constant time (`hmac.compare_digest`, no
early exit), and the owner is a hash of the key, so the store never holds a key. `/`, `/healthz`, `/readyz` and
`/metrics` stay open (probes and scrapers carry no key); `/admin/*` has its own token.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Sequence

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from llmops.errors import AuthenticationError
from serving.errors import error_info
from serving.protocol import ErrorResponse

__all__ = ["ANONYMOUS", "ApiKeyAuth", "ApiKeys", "owner_id", "request_owner"]

ANONYMOUS = "anonymous"
PROTECTED_PREFIX = "/v1/"


def owner_id(key: bytes) -> str:
    """The stored owner of a key: its SHA-256 (keys are random secrets, so the hash reveals nothing usable)."""
    return "key_" + hashlib.sha256(key).hexdigest()[:32]


class ApiKeys:
    def __init__(self, keys: Sequence[str]):
        self._keys = [k.encode("utf-8") for k in keys]

    @classmethod
    def from_env(cls, variable: str) -> "ApiKeys":
        return cls([k.strip() for k in os.environ.get(variable, "").split(",") if k.strip()])

    @property
    def open(self) -> bool:
        return not self._keys

    def owners(self) -> frozenset[str]:
        """The owner ids of these keys (what routes restricted to some keys compare a caller's owner with)."""
        return frozenset(owner_id(k) for k in self._keys)

    def owner(self, authorization: str | None) -> str:
        """The owner id for an `Authorization` header (decoded as Latin-1, as HTTP headers are);
        `AuthenticationError` without a valid key."""
        if self.open:
            return ANONYMOUS
        scheme, _, token = (authorization or "").partition(" ")
        presented = token.strip().encode("latin-1")  # the header's bytes again
        matched = False
        for key in self._keys:  # every key, every time: the time taken says nothing about which one matched
            matched |= hmac.compare_digest(presented, key)
        if scheme.lower() != "bearer" or not matched:
            raise AuthenticationError("missing or wrong API key: send Authorization: Bearer <key>")
        return owner_id(presented)


class ApiKeyAuth:
    """ASGI middleware: checks the key of every `/v1/*` request and puts its owner id in `request.state.owner`."""

    def __init__(self, app: ASGIApp, keys: ApiKeys):
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIX):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        try:
            owner = self.keys.owner(headers.get(b"authorization", b"").decode("latin-1"))
        except AuthenticationError as e:
            status, info = error_info(e)
            response = JSONResponse(ErrorResponse(error=info).model_dump(mode="json"), status_code=status,
                                    headers={"WWW-Authenticate": "Bearer"})
            return await response(scope, receive, send)
        scope.setdefault("state", {})["owner"] = owner
        await self.app(scope, receive, send)


def request_owner(scope_state: object) -> str:
    """The owner `ApiKeyAuth` set on a request's state (`anonymous` when the API is open)."""
    return getattr(scope_state, "owner", ANONYMOUS)
