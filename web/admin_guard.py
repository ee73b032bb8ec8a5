"""The support console's gate, run before EVERY console request (the blueprint's before_request).

Only the sign-in page, the session endpoint and sign-out are open (``PUBLIC``); every other
console route — pages and actions, and any route added later — passes ``check``:

1. the session cookie names support staff *now* (core/services/support_access.py): no cookie
   or a bad one is 401 (a GET gets the sign-in page with it), anyone else 403;
2. an action (any method but GET/HEAD) must come from the console's own pages: an ``Origin``
   header, when the browser sends one, must be this site, and the form must carry the CSRF
   token of this very session. Either failing is 403 and nothing runs.

The cookie itself is HttpOnly, SameSite=Strict, limited to /admin, and Secure on https.
"""
from __future__ import annotations

from urllib.parse import urlparse

from flask import current_app, g, request

from core.domain.errors import Forbidden, Unauthorized
from core.services import support_access

COOKIE = "tb_support_session"
PATH = "/admin"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _origin(url: str) -> tuple[str, str]:
    parts = urlparse(url)
    return parts.scheme.lower(), (parts.netloc or "").lower()


def same_origin() -> bool:
    """No ``Origin`` (an old browser or a tool: the CSRF token decides), or this site's own:
    the configured public address, or the host this request was sent to."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    scheme, netloc = _origin(origin)
    settings = current_app.config["TOKENBANK_DEPS"].settings
    return (scheme, netloc) == _origin(settings.public_base_url) or netloc == request.host.lower()


def check(public: frozenset[str], render_refusal):
    """None to let the request through (``g.operator``, ``g.csrf`` set), or the refusal to answer."""
    g.operator, g.csrf = None, None
    if request.endpoint in public:
        return None
    deps = current_app.config["TOKENBANK_DEPS"]
    cookie = request.cookies.get(COOKIE)
    try:
        g.operator = support_access.operator_for(deps, cookie)
    except Unauthorized as exc:
        return render_refusal(401, exc.reason)
    except Forbidden as exc:
        g.csrf = support_access.csrf_token(cookie)  # signed in as someone else: they may still sign out
        return render_refusal(403, exc.reason)
    if request.method not in SAFE_METHODS:
        if not same_origin():
            return render_refusal(403, "forged request refused: it did not come from the support console")
        if not support_access.csrf_ok(cookie, request.form.get("csrf")):
            return render_refusal(403, "forged request refused: the form's CSRF token is missing or not this "
                                       "session's; reload the page and try again")
    g.csrf = support_access.csrf_token(cookie)
    return None


def set_session_cookie(response, cookie: str, max_age: int) -> None:
    https = urlparse(current_app.config["TOKENBANK_DEPS"].settings.public_base_url).scheme == "https"
    response.set_cookie(COOKIE, cookie, max_age=max_age, path=PATH, secure=https, httponly=True, samesite="Strict")


def clear_session_cookie(response) -> None:
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="Strict")
