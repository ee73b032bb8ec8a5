"""Test-control endpoints under /_sandbox (not part of Stripe's API; JSON in and out)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from . import payments, subscriptions
from .checkout_page import pay_with, success_redirect
from .errors import StripeError
from .events import Sandbox, delivery_summary, matches_type
from .store import public

bp = Blueprint("control", __name__, url_prefix="/_sandbox")


def sb() -> Sandbox:
    return current_app.config["SANDBOX"]


def _body() -> dict:
    data = request.get_json(silent=True)
    if data is None and request.form:
        data = request.form.to_dict()
    return data or {}


def _error(e: StripeError):
    return jsonify(e.body()), e.status


def _truthy(value) -> bool:
    return value is True or str(value).lower() in ("1", "true", "yes")


@bp.errorhandler(StripeError)
def handle(e: StripeError):
    return _error(e)


@bp.post("/checkout/<session_id>/pay")
def pay(session_id):
    """{"card": "4242424242424242", "email": "..."} or {"method": "delayed"}."""
    s, body = sb(), _body()
    with s.store.lock:
        cs = s.store.require(session_id, "checkout.session", "checkout.session")
        if cs["status"] != "open":
            raise StripeError(410 if cs["status"] == "expired" else 409,
                              f"This Checkout Session is {cs['status']}; it cannot be paid.", code=f"checkout_session_{cs['status']}")
        method = body.get("method") or "card"
        pay_with(s, cs, method, body.get("email") or "sandbox-buyer@example.com", body.get("card") or "")
        return jsonify({"session": public(cs), "redirect_url": success_redirect(cs)})


@bp.post("/checkout/<session_id>/async_result")
def async_result(session_id):
    """{"succeeded": true|false}: settles a session paid with a delayed method."""
    s, body = sb(), _body()
    if "succeeded" not in body:
        raise StripeError(400, "Missing required param: succeeded.", code="parameter_missing", param="succeeded")
    with s.store.lock:
        cs = s.store.require(session_id, "checkout.session", "checkout.session")
        payments.settle_session(s, cs, _truthy(body["succeeded"]))
        return jsonify({"session": public(cs)})


@bp.post("/disputes/<dispute_id>/close")
def close_dispute(dispute_id):
    """{"status": "won"|"lost"|"warning_closed"}."""
    s, body = sb(), _body()
    with s.store.lock:
        dp = s.store.require(dispute_id, "dispute")
        payments.close_dispute(s, dp, body.get("status") or None)
        return jsonify(public(dp))


@bp.post("/subscriptions/<subscription_id>/cycle")
def cycle_subscription(subscription_id):
    """{"card": "4000000000000002"} (optional): the end of the subscription's current period.

    A subscription set to cancel at period end ends (customer.subscription.deleted); any other
    is renewed: the next period's invoice (billing_reason subscription_cycle), paid with `card`
    (a test number, token or PaymentMethod id) or its default payment method, with its events.
    A declined renewal answers 200 too: the invoice stays open and the subscription is past_due."""
    s, body = sb(), _body()
    with s.store.lock:
        sub = s.store.require(subscription_id, "subscription")
        inv = subscriptions.cycle(s, sub, str(body["card"]) if body.get("card") else None)
        return jsonify({"subscription": public(sub), "invoice": public(inv) if inv else None})


@bp.get("/events")
def events():
    """All events, oldest first, with their delivery attempts. ?type= filters (wildcards allowed)."""
    s = sb()
    etype = request.args.get("type")
    with s.store.lock:
        evs = list(reversed(s.store.newest_first("event")))
        out = [delivery_summary(s, ev) for ev in evs if not etype or matches_type(ev["type"], etype)]
    return jsonify({"data": out})


@bp.get("/webhook_endpoints")
def get_endpoints():
    s = sb()
    return jsonify({"urls": s.dispatcher.urls, "secrets_count": len(s.dispatcher.secrets)})


@bp.post("/webhook_endpoints")
def set_endpoints():
    """{"urls": [...], "secrets": [...]} replaces the targets (and, if given, the signing secrets)."""
    s, body = sb(), _body()
    urls = body.get("urls")
    if isinstance(urls, str):
        urls = [u for u in urls.split(",") if u]
    if not isinstance(urls, list):
        raise StripeError(400, "urls must be a list of URLs.", param="urls")
    secrets = body.get("secrets")
    if isinstance(secrets, str):
        secrets = [x for x in secrets.split(",") if x]
    s.dispatcher.set_endpoints([str(u) for u in urls], secrets)
    return jsonify({"urls": s.dispatcher.urls, "secrets_count": len(s.dispatcher.secrets)})


@bp.get("/clock")
def get_clock():
    s = sb()
    return jsonify({"now": s.store.now(), "offset_seconds": s.store.clock_offset})


@bp.post("/clock")
def advance_clock():
    """{"advance_seconds": N}: moves the sandbox's clock forward, then expires due sessions at once."""
    s, body = sb(), _body()
    try:
        seconds = int(body.get("advance_seconds", 0))
    except (TypeError, ValueError):
        raise StripeError(400, "advance_seconds must be an integer.", param="advance_seconds")
    if seconds < 0:
        raise StripeError(400, "The sandbox clock only moves forward.", param="advance_seconds")
    now = s.store.advance(seconds)
    expired = payments.expire_due(s)
    return jsonify({"now": now, "offset_seconds": s.store.clock_offset, "expired": expired})


@bp.get("/unknown_requests")
def unknown_requests():
    s = sb()
    with s.store.lock:
        return jsonify({"data": list(s.store.unknown_requests)})


@bp.post("/reset")
def reset():
    """Forgets every object, event, idempotency key and the clock offset (endpoints stay)."""
    s = sb()
    with s.store.lock:
        s.store.reset()
        s.dispatcher.clear()
    return jsonify({"ok": True})
