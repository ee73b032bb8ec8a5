"""The customer portal's API: POST /v1/billing_portal/sessions (registered on sandbox.api's blueprint
with its `api_route`: authentication, strictness, idempotency and errors as everywhere).

As at Stripe (API 2026-10-28.endive, stripe-python 16.1.0's `billing_portal.Session`): a session
is made for an existing `customer`, with the account's default portal configuration unless
`configuration` names one; it answers a `billing_portal.session` whose `url` is the hosted
portal (sandbox/portal_page.py), emits `billing_portal.session.created`, and cannot be
retrieved or listed afterwards. The default configuration (`bpc_...`, `is_default: true`) is the
sandbox's "Dashboard setting": customers may cancel a subscription at the end of its period
and see their invoices; nothing else.

Not supported (400 saying so): `customer_account` (Accounts v2), `on_behalf_of` (Connect),
`flow_data` (deep links) and `after_expiration` (login recovery). A session's link works for
`SESSION_SECONDS` on the sandbox clock. Every function expects the store's lock held.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from . import billing_customers, objects
from .api import api_route, render
from .errors import StripeError, invalid_param
from .events import Sandbox, emit
from .forms import get_str
from .store import new_id

UNSUPPORTED = {"customer_account": "Accounts v2 customers", "on_behalf_of": "Connect",
               "flow_data": "portal deep links (flow_data)", "after_expiration": "login after expiration"}
SESSION_SECONDS = 3600


def default_configuration(sb: Sandbox) -> dict:
    """The account's default portal configuration, made once."""
    for conf in sb.store.newest_first("billing_portal.configuration"):
        if conf.get("is_default"):
            return conf
    now = sb.store.now()
    conf = objects.template("billing_portal.configuration")
    conf.update({"id": new_id("billing_portal.configuration"), "created": now, "updated": now, "livemode": False,
                 "is_default": True, "active": True, "application": None, "default_return_url": None,
                 "metadata": {}, "name": None, "login_page": {"enabled": False, "url": None},
                 "business_profile": {"headline": None, "privacy_policy_url": None, "terms_of_service_url": None}})
    features = conf["features"]
    features["customer_update"] = {"allowed_updates": [], "enabled": False}
    features["invoice_history"] = {"enabled": True}
    features["payment_method_update"] = {"enabled": False, "payment_method_configuration": None}
    features["subscription_cancel"] = {"cancellation_reason": {"enabled": False, "options": []}, "enabled": True,
                                       "mode": "at_period_end", "proration_behavior": "none"}
    features["subscription_update"].update({"default_allowed_updates": [], "enabled": False})
    return sb.store.add(conf)


def _return_url(params: dict) -> str | None:
    url = get_str(params, "return_url")
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid_param("return_url", "Not a valid URL", code="url_invalid")
    return url


def find_session(sb: Sandbox, secret: str) -> dict | None:
    return next((s for s in sb.store.newest_first("billing_portal.session") if s.get("_secret") == secret), None)


@api_route("/billing_portal/sessions", methods=("POST",))
def create_session(s: Sandbox, params: dict) -> dict:
    for name, what in UNSUPPORTED.items():
        if params.get(name) not in (None, ""):
            raise invalid_param(name, f"The sandbox does not support {what}.")
    cus = billing_customers.require_customer(s, get_str(params, "customer"))
    conf_id = get_str(params, "configuration")
    conf = s.store.get(conf_id, "billing_portal.configuration") if conf_id else default_configuration(s)
    if conf is None:
        raise StripeError(400, f"No such configuration: '{conf_id}'", code="resource_missing", param="configuration")
    if not conf["active"]:
        raise invalid_param("configuration", "This configuration is inactive.")
    return_url = _return_url(params) or conf.get("default_return_url")
    now, secret = s.store.now(), "test_" + secrets.token_urlsafe(32)
    session = objects.template("billing_portal.session")
    session.update({
        "id": new_id("billing_portal.session"), "configuration": conf["id"], "created": now, "customer": cus["id"],
        "customer_account": None, "flow": None, "livemode": False, "locale": get_str(params, "locale"),
        "on_behalf_of": None, "return_url": return_url, "url": f"{s.public_url}/p/session/{secret}",
        "after_expiration": None, "_secret": secret, "_expires_at": now + SESSION_SECONDS,
    })
    s.store.add(session)
    emit(s, "billing_portal.session.created", session)
    return render(s, session, params)
