"""Builders of Stripe-shaped objects.

Each builder deep-copies Stripe's own example object (stripe_fixtures.json,
from Stripe's OpenAPI fixtures) so every field Stripe documents is present,
then overwrites the example's placeholder values with real, consistent ones.
"""

from __future__ import annotations

import copy
import functools
import json
import secrets
from pathlib import Path

from .store import new_id

_FIXTURES_PATH = Path(__file__).with_name("stripe_fixtures.json")

ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}

EMPTY_ADDRESS = {"city": None, "country": None, "line1": None, "line2": None, "postal_code": None, "state": None}


@functools.lru_cache(maxsize=1)
def _fixtures() -> dict:
    return json.loads(_FIXTURES_PATH.read_text())["resources"]


def template(kind: str) -> dict:
    return copy.deepcopy(_fixtures()[kind])


def _apply(base: dict, overrides: dict) -> dict:
    base.update(overrides)
    return base


def format_amount(amount: int, currency: str) -> str:
    if currency.lower() in ZERO_DECIMAL:
        return f"{amount} {currency.upper()}"
    return f"{amount / 100:,.2f} {currency.upper()}"


# --- catalogue ---------------------------------------------------------------

def product(now: int, name: str, description: str | None = None, metadata: dict | None = None,
            active: bool = True, images: list | None = None) -> dict:
    return _apply(template("product"), {
        "id": new_id("product"), "created": now, "updated": now, "name": name,
        "description": description, "metadata": metadata or {}, "active": active,
        "default_price": None, "images": images or [], "package_dimensions": None,
        "shippable": None, "type": "service", "url": None, "marketing_features": [],
    })


def price(now: int, product_id: str, currency: str, unit_amount: int, recurring: dict | None = None,
          metadata: dict | None = None, nickname: str | None = None, lookup_key: str | None = None,
          active: bool = True) -> dict:
    rec = None
    if recurring:
        rec = {"interval": recurring["interval"], "interval_count": int(recurring.get("interval_count") or 1),
               "meter": None, "usage_type": "licensed", "trial_period_days": None}
    return _apply(template("price"), {
        "id": new_id("price"), "created": now, "product": product_id, "currency": currency,
        "unit_amount": unit_amount, "unit_amount_decimal": str(unit_amount), "recurring": rec,
        "type": "recurring" if rec else "one_time", "metadata": metadata or {}, "nickname": nickname,
        "lookup_key": lookup_key, "active": active, "custom_unit_amount": None, "transform_quantity": None,
    })


def customer(now: int, email: str | None = None, name: str | None = None, metadata: dict | None = None,
             description: str | None = None, phone: str | None = None) -> dict:
    return _apply(template("customer"), {
        "id": new_id("customer"), "created": now, "email": email, "name": name, "metadata": metadata or {},
        "description": description, "phone": phone, "discount": None, "currency": None, "balance": 0,
        "address": None, "shipping": None, "invoice_prefix": secrets.token_hex(4).upper(),
    })


# --- checkout ------------------------------------------------------------------

def line_item(price_obj: dict, quantity: int, description: str) -> dict:
    amount = price_obj["unit_amount"] * quantity
    return _apply(template("item"), {
        "id": new_id("item"), "price": copy.deepcopy(price_obj), "quantity": quantity,
        "description": description, "currency": price_obj["currency"], "amount_subtotal": amount,
        "amount_total": amount, "amount_discount": 0, "amount_tax": 0, "metadata": {},
        "adjustable_quantity": None,
    })


def checkout_session(now: int, *, mode: str, currency: str, amount_total: int, expires_at: int,
                     url: str, success_url, cancel_url, client_reference_id, customer_id, customer_email,
                     metadata: dict, payment_method_types: list, locale=None, submit_type=None,
                     ui_mode: str = "hosted", adaptive_pricing: bool = False) -> dict:
    sid = new_id("checkout.session")
    return _apply(template("checkout.session"), {
        "id": sid, "created": now, "expires_at": expires_at, "mode": mode, "currency": currency,
        "amount_subtotal": amount_total, "amount_total": amount_total, "url": url.replace("{ID}", sid),
        "success_url": success_url, "cancel_url": cancel_url, "client_reference_id": client_reference_id,
        "customer": customer_id, "customer_email": customer_email, "metadata": metadata,
        "payment_method_types": payment_method_types, "status": "open", "payment_status": "unpaid",
        "payment_intent": None, "subscription": None, "invoice": None, "setup_intent": None,
        "customer_details": None, "collected_information": None, "shipping_cost": None,
        "currency_conversion": None, "shipping_address_collection": None, "shipping_options": [],
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "custom_text": {"after_submit": None, "shipping_address": None, "submit": None, "terms_of_service_acceptance": None},
        "consent_collection": None, "after_expiration": None, "invoice_creation": None if mode != "payment" else
        {"enabled": False, "invoice_data": {"account_tax_ids": None, "custom_fields": None, "description": None,
                                            "footer": None, "issuer": None, "metadata": {}, "rendering_options": None}},
        "adaptive_pricing": {"enabled": adaptive_pricing}, "payment_method_configuration_details": None,
        "locale": locale, "submit_type": submit_type, "ui_mode": ui_mode, "client_secret": None,
        "customer_creation": "if_required" if mode == "payment" else "always", "discounts": [],
        "managed_payments": {"enabled": False}, "origin_context": None, "wallet_options": None,
        "permissions": None, "integration_identifier": None,
    })


def customer_details(email: str | None, name: str | None = None) -> dict:
    return {"address": copy.deepcopy(EMPTY_ADDRESS), "email": email, "name": name, "phone": None,
            "tax_exempt": "none", "tax_ids": [], "business_name": None, "individual_name": None}


# --- payments ------------------------------------------------------------------

def payment_intent(now: int, amount: int, currency: str, metadata: dict | None = None,
                   description: str | None = None, customer_id: str | None = None,
                   payment_method_types: list | None = None, receipt_email: str | None = None,
                   shipping: dict | None = None, setup_future_usage: str | None = None,
                   capture_method: str = "automatic") -> dict:
    pid = new_id("payment_intent")
    return _apply(template("payment_intent"), {
        "id": pid, "created": now, "amount": amount, "currency": currency, "metadata": metadata or {},
        "description": description, "customer": customer_id, "payment_method": None,
        "payment_method_types": payment_method_types or ["card"], "status": "requires_payment_method",
        "amount_received": 0, "amount_capturable": 0, "canceled_at": None, "cancellation_reason": None,
        "client_secret": f"{pid}_secret_{secrets.token_urlsafe(18)}", "last_payment_error": None,
        "latest_charge": None, "next_action": None, "processing": None, "receipt_email": receipt_email,
        "shipping": shipping, "setup_future_usage": setup_future_usage, "capture_method": capture_method,
        "automatic_payment_methods": None, "payment_method_configuration_details": None,
        "transfer_data": None, "managed_payments": {"enabled": False}, "amount_details": {"tip": {}},
    })


def payment_method(now: int, pm_type: str, details: dict, billing_details: dict | None = None,
                   metadata: dict | None = None, customer_id: str | None = None) -> dict:
    base = template("payment_method")
    card = base.pop("card")
    bd = {"address": copy.deepcopy(EMPTY_ADDRESS), "email": None, "name": None, "phone": None, "tax_id": None}
    for k, v in (billing_details or {}).items():
        if k == "address" and isinstance(v, dict):
            bd["address"].update(v)
        elif k in bd:
            bd[k] = v
    obj = _apply(base, {
        "id": new_id("payment_method"), "created": now, "type": pm_type, "billing_details": bd,
        "metadata": metadata or {}, "customer": customer_id, "allow_redisplay": "unspecified",
    })
    if pm_type == "card":
        card.update({"brand": details["brand"], "display_brand": details["brand"], "last4": details["last4"],
                     "exp_month": details.get("exp_month", 12), "exp_year": details.get("exp_year", 2034),
                     "funding": details.get("funding", "credit"), "country": details.get("country", "US"),
                     "fingerprint": details["fingerprint"], "generated_from": None, "wallet": None,
                     "networks": {"available": [details["brand"]], "preferred": None}})
        obj["card"] = card
    else:
        obj[pm_type] = details
    return obj


def card_details_for_charge(pm: dict, amount: int) -> dict:
    """payment_method_details of a charge, from the payment method used."""
    if pm["type"] != "card":  # a bank debit: the method's details as a charge has them (no generated_from)
        debit = {k: copy.deepcopy(v) for k, v in pm.get(pm["type"], {}).items() if k != "generated_from"}
        return {"type": pm["type"], pm["type"]: {**debit, "expected_debit_date": None, "mandate": None}}
    details = template("charge")["payment_method_details"]
    card = details["card"]
    card.update({"brand": pm["card"]["brand"], "last4": pm["card"]["last4"], "exp_month": pm["card"]["exp_month"],
                 "exp_year": pm["card"]["exp_year"], "fingerprint": pm["card"]["fingerprint"],
                 "funding": pm["card"]["funding"], "country": pm["card"]["country"], "network": pm["card"]["brand"],
                 "amount_authorized": amount, "wallet": None, "installments": None,
                 "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
                 "three_d_secure": None, "authorization_code": "123456", "network_transaction_id": None})
    return details


def charge(now: int, pi: dict, pm: dict, status: str, failure_code: str | None = None,
           failure_message: str | None = None, outcome: dict | None = None) -> dict:
    cid = new_id("charge")
    base = template("charge")
    succeeded = status == "succeeded"
    bd = copy.deepcopy(pm["billing_details"])
    return _apply(base, {
        "id": cid, "created": now, "amount": pi["amount"], "currency": pi["currency"],
        "amount_captured": pi["amount"] if succeeded else 0, "amount_refunded": 0, "captured": succeeded,
        "paid": succeeded, "status": status, "refunded": False, "disputed": False,
        "payment_intent": pi["id"], "payment_method": pm["id"], "metadata": copy.deepcopy(pi["metadata"]),
        "description": pi.get("description"), "customer": pi.get("customer"), "billing_details": bd,
        "balance_transaction": new_id("balance_transaction") if succeeded else None,
        "failure_code": failure_code, "failure_message": failure_message, "failure_balance_transaction": None,
        "outcome": outcome or {"advice_code": None, "network_advice_code": None, "network_decline_code": None,
                               "network_status": "approved_by_network", "reason": None, "risk_level": "normal",
                               "risk_score": 12, "seller_message": "Payment complete.", "type": "authorized"},
        "payment_method_details": card_details_for_charge(pm, pi["amount"]),
        "receipt_email": pi.get("receipt_email"), "receipt_url": None, "receipt_number": None,
        "refunds": {"object": "list", "data": [], "has_more": False, "url": f"/v1/charges/{cid}/refunds"},
        "shipping": pi.get("shipping"), "source": None, "transfer_data": None,
        "calculated_statement_descriptor": "TOKENBANK SANDBOX", "fraud_details": {},
    })


def refund(now: int, ch: dict, amount: int, reason: str | None, metadata: dict | None) -> dict:
    return _apply(template("refund"), {
        "id": new_id("refund"), "created": now, "amount": amount, "currency": ch["currency"],
        "charge": ch["id"], "payment_intent": ch["payment_intent"], "reason": reason,
        "metadata": metadata or {}, "status": "succeeded", "balance_transaction": new_id("balance_transaction"),
        "destination_details": {"card": {"reference_status": "pending", "reference_type": "acquirer_reference_number",
                                         "type": "refund"}, "type": "card"},
        "payment_method": ch["payment_method"],
    })


def dispute(now: int, ch: dict, inquiry: bool) -> dict:
    base = template("dispute")
    base["payment_method_details"]["card"]["case_type"] = "inquiry" if inquiry else "chargeback"
    base["evidence_details"].update({"due_by": now + 7 * 86400, "has_evidence": False, "past_due": False,
                                     "submission_count": 0})
    return _apply(base, {
        "id": new_id("dispute"), "created": now, "amount": ch["amount"], "currency": ch["currency"],
        "charge": ch["id"], "payment_intent": ch["payment_intent"], "metadata": {},
        "reason": "general" if inquiry else "fraudulent",
        "status": "warning_needs_response" if inquiry else "needs_response",
        "is_charge_refundable": inquiry, "balance_transactions": [], "enhanced_eligibility_types": [],
    })


def subscription(now: int, customer_id: str, items: list[dict], metadata: dict, pm_id: str | None) -> dict:
    sid = new_id("subscription")
    base = template("subscription")
    item_template = base["items"]["data"][0]
    interval = items[0]["price"]["recurring"]
    period_end = now + {"day": 86400, "week": 7 * 86400, "month": 30 * 86400, "year": 365 * 86400}.get(
        interval["interval"], 30 * 86400) * interval["interval_count"]
    sub_items = []
    for li in items:
        si = copy.deepcopy(item_template)
        si.update({"id": new_id("subscription_item"), "created": now, "price": copy.deepcopy(li["price"]),
                   "quantity": li["quantity"], "subscription": sid, "plan": None, "metadata": {},
                   "current_period_start": now, "current_period_end": period_end, "billing_thresholds": None})
        sub_items.append(si)
    return _apply(base, {
        "id": sid, "created": now, "customer": customer_id, "currency": items[0]["currency"], "metadata": metadata,
        "status": "active", "start_date": now, "billing_cycle_anchor": now, "billing_cycle_anchor_config": None,
        "cancel_at": None, "canceled_at": None, "ended_at": None, "cancel_at_period_end": False,
        "trial_start": None, "trial_end": None, "next_pending_invoice_item_invoice": None,
        "pending_invoice_item_interval": None, "pending_update": None, "pause_collection": None,
        "transfer_data": None, "default_payment_method": pm_id, "latest_invoice": None, "billing_thresholds": None,
        "billing_schedules": [], "managed_payments": {"enabled": False},
        "items": {"object": "list", "data": sub_items, "has_more": False,
                  "url": f"/v1/subscription_items?subscription={sid}"},
    })


def event(now: int, event_type: str, data_object: dict, api_version: str, pending_webhooks: int,
          request_id: str | None, idempotency_key: str | None, previous_attributes: dict | None = None) -> dict:
    data = {"object": data_object}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return _apply(template("event"), {
        "id": new_id("event"), "object": "event", "api_version": api_version, "created": now, "data": data,
        "livemode": False, "pending_webhooks": pending_webhooks, "type": event_type,
        "request": {"id": request_id, "idempotency_key": idempotency_key},
    })
