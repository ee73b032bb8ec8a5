"""The hosted customer portal: GET /p/session/{secret} (the `url` of a billing_portal.session).

Like Stripe's portal with the sandbox's default configuration: the customer's current
subscriptions (what, price, "Renews on" / "Cancels on"), **Cancel plan** then a confirmation
(cancellation at the period's end: `cancel_at_period_end`, `cancellation_details.reason`
`cancellation_requested`, and `customer.subscription.updated` through the usual delivery),
**Renew plan** to undo it before the end, the invoice history, and a link back to `return_url`.
Server-rendered forms, no scripts. Stable ids: portal-title, subscription-{id}, status-{id},
cancel-{id}, confirm-cancel-button, back-link, renew-{id}, invoices, return-link, error.
An unknown link is 404, a session past its hour 410 (open a new one from the merchant's site).
"""

from __future__ import annotations

import datetime

from flask import Blueprint, current_app, redirect, render_template, url_for

from . import objects, subscriptions
from .billing_portal import find_session
from .errors import StripeError
from .events import Sandbox

bp = Blueprint("portal_page", __name__, template_folder="templates")
CANCELABLE = ("active", "trialing", "past_due", "unpaid", "incomplete")


def sb() -> Sandbox:
    return current_app.config["SANDBOX"]


def _day(ts: int | None) -> str:
    if not ts:
        return ""
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%B %-d, %Y")


def _message(title: str, message: str, status: int, link: str | None = None):
    return render_template("message.html", title=title, message=message, is_error=True, link=link,
                           link_text="Return to the site" if link else "", link_id="return-link"), status


def _open_session(s: Sandbox, secret: str):
    """(session, None) or (None, an error page)."""
    session = find_session(s, secret)
    if session is None:
        return None, _message("Not found", "This portal link is not valid.", 404)
    if s.store.now() > session["_expires_at"]:
        return None, _message("Session expired", "This portal session has expired. Return to the site and open "
                              "the billing portal again.", 410, session.get("return_url"))
    return session, None


def _view(s: Sandbox, sub: dict) -> dict:
    item = sub["items"]["data"][0]
    price = item["price"]
    product = s.store.get(price.get("product"), "product") or {}
    recurring = price.get("recurring") or {}
    _start, end = subscriptions._period(sub)
    return {"id": sub["id"], "name": product.get("name") or price.get("nickname") or "Subscription",
            "price": objects.format_amount(price["unit_amount"] * item["quantity"], price["currency"]),
            "interval": recurring.get("interval", ""), "status": sub["status"], "end": _day(end),
            "canceling": sub["cancel_at_period_end"], "cancelable": sub["status"] in CANCELABLE}


def _subscription(s: Sandbox, session: dict, sub_id: str) -> dict | None:
    sub = s.store.get(sub_id, "subscription")
    return sub if sub is not None and sub["customer"] == session["customer"] else None


def _home(s: Sandbox, session: dict, error: str | None = None, status: int = 200):
    customer = s.store.get(session["customer"], "customer") or {}
    subs = [_view(s, x) for x in s.store.newest_first("subscription")
            if x["customer"] == session["customer"] and x["status"] not in ("canceled", "incomplete_expired")]
    invoices = [{"id": i["id"], "number": i.get("number") or i["id"], "date": _day(i["created"]),
                 "amount": objects.format_amount(i["total"], i["currency"]), "status": i["status"]}
                for i in s.store.newest_first("invoice") if i["customer"] == session["customer"]
                and i["status"] in ("paid", "open", "void", "uncollectible")][:12]
    return render_template("portal.html", session=session, customer=customer, subs=subs, invoices=invoices,
                           error=error), status


@bp.get("/p/session/<secret>")
def home(secret: str):
    s = sb()
    with s.store.lock:
        session, failed = _open_session(s, secret)
        return failed or _home(s, session)


@bp.get("/p/session/<secret>/subscriptions/<sub_id>/cancel")
def confirm_cancel(secret: str, sub_id: str):
    s = sb()
    with s.store.lock:
        session, failed = _open_session(s, secret)
        if failed:
            return failed
        sub = _subscription(s, session, sub_id)
        if sub is None:
            return _message("Not found", "No such subscription for this customer.", 404, session.get("return_url"))
        return render_template("portal_cancel.html", session=session, sub=_view(s, sub))


def _change(secret: str, sub_id: str, cancel: bool):
    s = sb()
    with s.store.lock:
        session, failed = _open_session(s, secret)
        if failed:
            return failed
        sub = _subscription(s, session, sub_id)
        if sub is None:
            return _message("Not found", "No such subscription for this customer.", 404, session.get("return_url"))
        if cancel and sub["status"] not in CANCELABLE:
            return _home(s, session, "This subscription cannot be canceled.", 409)
        try:
            subscriptions.update(s, sub, {"cancel_at_period_end": "true" if cancel else "false"},
                                 reason="cancellation_requested")
        except StripeError as e:
            return _home(s, session, e.message, e.status)
    return redirect(url_for("portal_page.home", secret=secret), code=303)


@bp.post("/p/session/<secret>/subscriptions/<sub_id>/cancel")
def cancel(secret: str, sub_id: str):
    return _change(secret, sub_id, cancel=True)


@bp.post("/p/session/<secret>/subscriptions/<sub_id>/renew")
def renew(secret: str, sub_id: str):
    return _change(secret, sub_id, cancel=False)
