"""schemathesis hooks for scripts/check-openapi: credentials for every call.

- Provider routes (`…/process`): the body is serialised here, once, and signed
  over exactly those bytes: `Authorization: HMAC-SHA256 <hex>` with the
  secret in WALLET_HMAC_SECRET (for `/v1/operators/{code}/process` too: the
  service accepts `HMAC_SECRETS` for `default`, and any other code is 404).
- Back-office routes: `Authorization: Bearer $WALLET_ADMIN_TOKEN`.
- Player routes (`/v1/me…`, logout): a session token of a player registered
  at `default` by scripts/check-openapi (WALLET_PLAYER_TOKEN), unless a link
  already put one there (login → /v1/me).
"""

import hashlib
import hmac
import json
import os

import schemathesis

SECRET = os.environ["WALLET_HMAC_SECRET"].encode()
ADMIN = os.environ["WALLET_ADMIN_TOKEN"]
PLAYER = os.environ["WALLET_PLAYER_TOKEN"]

PLAYER_PATHS = ("/v1/me", "/v1/auth/logout")
PUBLIC_PATHS = ("/v1/auth/register", "/v1/auth/login", "/v1/tenant", "/health/", "/metrics", "/openapi.json", "/docs")


def _set_header(case, name, value):
    headers = dict(case.headers or {})
    for key in [k for k in headers if k.lower() == name.lower()]:
        del headers[key]
    headers[name] = value
    case.headers = headers


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    path = case.operation.path
    if path.endswith("/process"):
        body = case.body
        if isinstance(body, (bytes, bytearray)):
            raw = bytes(body)
        elif type(body).__name__ == "NotSet":
            raw = b""
        else:
            raw = json.dumps(body, separators=(",", ":")).encode()
            # Sent as these exact bytes, the bytes that were signed.
            case.body = raw
        signature = hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
        _set_header(case, "Authorization", f"HMAC-SHA256 {signature}")
    elif path.startswith(PLAYER_PATHS):
        current = next((v for k, v in (case.headers or {}).items() if k.lower() == "authorization"), "")
        if not str(current).startswith("Bearer ply_"):
            _set_header(case, "Authorization", f"Bearer {PLAYER}")
    elif not path.startswith(PUBLIC_PATHS):
        _set_header(case, "Authorization", f"Bearer {ADMIN}")
