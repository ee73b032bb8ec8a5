"""Security headers on every response, and the bearer-token guard for the user API."""
from __future__ import annotations

import hmac
from functools import wraps
from urllib.parse import urlparse

from flask import current_app, g, request

from core.domain.errors import Unauthorized
from core.services.auth import user_from_authorization


def auth_origin(settings) -> str:
    """Where the browser signs in: the Auth emulator locally, Google's Identity Toolkit in production."""
    if settings.firebase_auth_emulator_host:
        return f"http://{settings.firebase_auth_emulator_host}"
    return "https://identitytoolkit.googleapis.com https://securetoken.googleapis.com"


def content_security_policy(settings) -> str:
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        f"connect-src 'self' {auth_origin(settings)}",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ])


def install_headers(app, settings) -> None:
    csp = content_security_policy(settings)
    https = urlparse(settings.public_base_url).scheme == "https"

    @app.after_request
    def headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
        if response.mimetype == "text/html":
            response.headers.setdefault("Content-Security-Policy", csp)
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        if https:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response


def _service_key_matches(presented: str, keys) -> bool:
    return any(hmac.compare_digest(presented.encode(), key.encode()) for key in keys)


def signed_in_or_service(view):
    """A signed-in user (``g.uid``) or a trusted backend with a service key (``g.service``)."""
    @wraps(view)
    def guarded(*args, **kwargs):
        presented = request.headers.get("X-Service-Key")
        if presented is None:
            g.service = False
            return signed_in(view)(*args, **kwargs)
        deps = current_app.config["TOKENBANK_DEPS"]
        if not _service_key_matches(presented, deps.settings.service_api_keys):
            raise Unauthorized("invalid service key")
        g.service, g.uid = True, None
        return view(*args, **kwargs)
    return guarded


def signed_in(view):
    """Require a valid Firebase ID token; the uid is in ``g.uid``. Anything else: Unauthorized (401)."""
    @wraps(view)
    def guarded(*args, **kwargs):
        deps = current_app.config["TOKENBANK_DEPS"]
        g.uid = user_from_authorization(deps.verify_id_token, request.headers.get("Authorization"))
        return view(*args, **kwargs)
    return guarded
