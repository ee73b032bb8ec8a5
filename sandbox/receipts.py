"""Charge receipts: each charge that succeeded or is pending carries a `receipt_url`, as at Stripe
("the URL to view the receipt for this charge ... kept up-to-date to the latest state of the
charge, including any refunds; for an invoice, stylized as an invoice receipt"), and
GET /receipts/payment/{token} shows it: amount, date, payment method, what was bought, refunds.

A declined charge has no receipt (`receipt_url` stays null). The token is random and is the
only way to the page, as Stripe's receipt links are: no API key needed to open it.
Stable element ids: receipt-title, receipt-amount, receipt-date, receipt-method,
receipt-description, receipt-refunded, receipt-invoice.
"""

from __future__ import annotations

import datetime
import secrets

from flask import Blueprint, current_app, render_template

from . import objects
from .events import Sandbox

bp = Blueprint("receipts", __name__, template_folder="templates")


def assign(sb: Sandbox, ch: dict) -> None:
    """Gives a charge its receipt link (call with the store's lock held)."""
    ch["_receipt_token"] = secrets.token_urlsafe(24)
    ch["receipt_url"] = f"{sb.public_url}/receipts/payment/{ch['_receipt_token']}"


def _find(sb: Sandbox, token: str) -> dict | None:
    return next((ch for ch in sb.store.newest_first("charge") if ch.get("_receipt_token") == token), None)


@bp.get("/receipts/payment/<token>")
def show(token: str):
    sb: Sandbox = current_app.config["SANDBOX"]
    with sb.store.lock:
        ch = _find(sb, token)
        if ch is None:
            return render_template("message.html", title="Receipt not found", message="There is no receipt at this "
                                   "address.", is_error=True, link=None, link_text="", link_id="back-link"), 404
        pi = sb.store.get(ch.get("payment_intent"), "payment_intent") or {}
        invoice = sb.store.get(pi.get("_invoice"), "invoice")
        card = (ch.get("payment_method_details") or {}).get("card") or {}
        method = f"{str(card.get('brand') or 'card').title()} •••• {card.get('last4')}" if card.get("last4") else \
            str((ch.get("payment_method_details") or {}).get("type") or "")
        when = datetime.datetime.fromtimestamp(ch["created"], datetime.timezone.utc).strftime("%B %-d, %Y")
        refunded = ch.get("amount_refunded") or 0
        return render_template(
            "receipt.html", charge=ch, invoice=invoice, method=method, date=when,
            amount=objects.format_amount(ch["amount"], ch["currency"]),
            refunded=objects.format_amount(refunded, ch["currency"]) if refunded else None,
            description=ch.get("description") or (invoice or {}).get("description") or
            ("Subscription" if invoice else "Payment"),
            number=(invoice or {}).get("number") or ch.get("receipt_number"))
