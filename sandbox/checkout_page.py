"""The hosted checkout page: GET/POST /pay/{cs_id}.

Server-rendered, no scripts, no external resources (the CSS is served from
/pay/assets/). Element ids are stable for browser tests: email, card-number,
pay-button, delayed-button, cancel-link, error.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, current_app, redirect, render_template, request, send_from_directory

from . import cards, objects, payments
from .errors import StripeError
from .events import Sandbox

bp = Blueprint("checkout_page", __name__, template_folder="templates")
STATIC_DIR = Path(__file__).with_name("static")


def sb() -> Sandbox:
    return current_app.config["SANDBOX"]


def _message(title: str, message: str, status: int, is_error: bool = True, link: str | None = None,
             link_text: str = "", link_id: str = "back-link"):
    return render_template("message.html", title=title, message=message, is_error=is_error, link=link,
                           link_text=link_text, link_id=link_id), status


def _closed_page(cs: dict):
    if cs["status"] == "expired":
        return _message("Session expired", "This Checkout Session has expired. Nothing was charged.", 410,
                        link=cs.get("cancel_url"), link_text="Go back", link_id="cancel-link")
    return _message("Already paid", "This Checkout Session is already complete; it cannot be paid again.", 409,
                    link=success_redirect(cs), link_text="Continue", link_id="success-link")


def success_redirect(cs: dict) -> str | None:
    url = cs.get("success_url")
    return url.replace("{CHECKOUT_SESSION_ID}", cs["id"]) if url else None


def _page(cs: dict, error: str | None = None, email: str | None = None, card_number: str | None = None, status: int = 200):
    items = [{"description": li["description"], "quantity": li["quantity"],
              "amount": objects.format_amount(li["amount_total"], li["currency"])} for li in cs["_line_items"]]
    return render_template("checkout.html", cs=cs, items=items, error=error,
                           total=objects.format_amount(cs["amount_total"], cs["currency"]),
                           email=email if email is not None else cs.get("customer_email"),
                           card_number=card_number), status


@bp.get("/pay/assets/<path:name>")
def asset(name):
    return send_from_directory(STATIC_DIR, name, max_age=0)


@bp.get("/pay/<session_id>")
def show(session_id):
    s = sb()
    with s.store.lock:
        cs = s.store.get(session_id, "checkout.session")
        if cs is None:
            return _message("Not found", "No such Checkout Session.", 404)
        if cs["status"] != "open":
            return _closed_page(cs)
        return _page(cs)


def pay_with(s: Sandbox, cs: dict, method: str, email: str | None, card_number: str | None) -> dict:
    """Shared by the form and /_sandbox/checkout/{id}/pay. Raises StripeError on a bad card or email."""
    email = (email or "").strip() or cs.get("customer_email")
    if not email or "@" not in email:
        raise StripeError(400, "Your email address is invalid.", code="email_invalid", param="email")
    if method == "delayed":
        pm = payments.delayed_payment_method(s, email)
        return payments.pay_session(s, cs, pm, email, manual_settlement=True)
    if method != "card":
        raise StripeError(400, f"Unknown payment method '{method}' (card or delayed).", param="method")
    number, behaviour = cards.card_for_number(card_number or "", param="card_number")
    pm = payments._card_pm(s, number, behaviour, {"email": email})
    return payments.pay_session(s, cs, pm, email)


@bp.post("/pay/<session_id>")
def pay(session_id):
    s = sb()
    form = request.form
    method = form.get("method") or "card"
    email = form.get("email")
    card_number = form.get("card_number")
    with s.store.lock:
        cs = s.store.get(session_id, "checkout.session")
        if cs is None:
            return _message("Not found", "No such Checkout Session.", 404)
        if cs["status"] != "open":
            return _closed_page(cs)
        try:
            pay_with(s, cs, method, email, card_number)
        except StripeError as e:
            return _page(cs, error=e.message, email=email, card_number=card_number, status=e.status)
        target = success_redirect(cs)
    if target:
        return redirect(target, code=303)
    return _message("Payment complete" if cs["payment_status"] == "paid" else "Payment processing",
                    "Thanks! You can close this page.", 200, is_error=False)
