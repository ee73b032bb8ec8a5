"""Builders of Stripe-shaped billing objects: invoices, their lines, invoice items and
invoice payments.

stripe_fixtures.json has no example invoice, so these are written out field by field from
the shape of the pinned API version (stripe-python 16.1.0's `Invoice`, `InvoiceLineItem`,
`InvoiceItem`, `InvoicePayment`): every field that version's object has, none it has not.
Since 2025-03-31 an invoice names its subscription under `parent.subscription_details`
(with the subscription's metadata) and its payments are `invoice_payment` objects
(`payments` is includable: not part of the object unless expanded).
"""

from __future__ import annotations

import copy

from .objects import format_amount
from .store import new_id

ACCOUNT_NAME = "Local Stripe sandbox"
INCLUDABLE = {"invoice": ("payments",)}  # fields present only when expanded


def _money(amount: int) -> dict:
    return {"amount_due": amount, "amount_overpaid": 0, "amount_paid": 0, "amount_paid_off_stripe": 0,
            "amount_remaining": amount, "amount_shipping": 0, "subtotal": amount, "subtotal_excluding_tax": amount,
            "total": amount, "total_excluding_tax": amount, "total_discount_amounts": [],
            "total_pretax_credit_amounts": [], "total_taxes": [], "starting_balance": 0, "ending_balance": None,
            "post_payment_credit_notes_amount": 0, "pre_payment_credit_notes_amount": 0}


def invoice(now: int, cus: dict, *, currency: str, billing_reason: str, period_start: int, period_end: int,
            subscription: dict | None = None, description: str | None = None, metadata: dict | None = None,
            auto_advance: bool = True) -> dict:
    """A draft invoice without lines (add them with `add_lines`)."""
    iid = new_id("invoice")
    parent = None
    if subscription is not None:
        parent = {"type": "subscription_details", "quote_details": None,
                  "subscription_details": {"metadata": copy.deepcopy(subscription["metadata"]),
                                           "subscription": subscription["id"], "subscription_proration_date": None}}
    return {
        "id": iid, "object": "invoice", "account_country": "US", "account_name": ACCOUNT_NAME, "account_tax_ids": None,
        **_money(0), "application": None, "attempt_count": 0, "attempted": False, "auto_advance": auto_advance,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None, "provider": None, "status": None},
        "automatically_finalizes_at": now + 3600 if auto_advance else None, "billing_reason": billing_reason,
        "collection_method": "charge_automatically", "created": now, "currency": currency, "custom_fields": None,
        "customer": cus["id"], "customer_account": None, "customer_address": copy.deepcopy(cus.get("address")),
        "customer_email": cus.get("email"), "customer_name": cus.get("name"), "customer_phone": cus.get("phone"),
        "customer_shipping": copy.deepcopy(cus.get("shipping")), "customer_tax_exempt": cus.get("tax_exempt") or "none",
        "customer_tax_ids": [], "default_payment_method": None, "default_source": None, "default_tax_rates": [],
        "description": description, "discounts": [], "due_date": None, "effective_at": None, "footer": None,
        "from_invoice": None, "hosted_invoice_url": None, "invoice_pdf": None, "issuer": {"type": "self"},
        "last_finalization_error": None, "latest_revision": None,
        "lines": {"object": "list", "data": [], "has_more": False, "url": f"/v1/invoices/{iid}/lines"},
        "livemode": False, "metadata": metadata or {}, "next_payment_attempt": None, "number": None,
        "on_behalf_of": None, "parent": parent,
        "payment_settings": {"default_mandate": None, "payment_method_options": None, "payment_method_types": None},
        "period_end": period_end, "period_start": period_start, "receipt_number": None,
        "rendering": {"amount_tax_display": None, "pdf": {"page_size": "auto"}, "template": None, "template_version": None},
        "shipping_cost": None, "shipping_details": None, "statement_descriptor": None, "status": "draft",
        "status_details": None,
        "status_transitions": {"finalized_at": None, "marked_uncollectible_at": None, "paid_at": None, "voided_at": None},
        "test_clock": None, "threshold_reason": None, "webhooks_delivered_at": None,
    }


def _line(inv: dict, amount: int, currency: str, description: str, period: dict, parent: dict,
          price: dict | None, quantity: int, metadata: dict, subscription_id: str | None) -> dict:
    pricing = None
    if price is not None:
        pricing = {"type": "price_details", "price_details": {"price": price["id"], "product": price["product"]},
                   "unit_amount_decimal": str(price["unit_amount"])}
    return {"id": new_id("line_item"), "object": "line_item", "amount": amount, "currency": currency,
            "description": description, "discount_amounts": [], "discountable": True, "discounts": [],
            "invoice": inv["id"], "livemode": False, "metadata": metadata, "parent": parent, "period": period,
            "pretax_credit_amounts": [], "pricing": pricing, "quantity": quantity, "quantity_decimal": str(quantity),
            "subscription": subscription_id, "subtotal": amount, "taxes": []}


def subscription_line(inv: dict, sub: dict, item: dict, product_name: str) -> dict:
    price = item["price"]
    amount = price["unit_amount"] * item["quantity"]
    rec = price["recurring"]
    every = rec["interval"] if rec["interval_count"] == 1 else f"{rec['interval_count']} {rec['interval']}s"
    description = f"{item['quantity']} × {product_name} (at {format_amount(price['unit_amount'], price['currency'])} / {every})"
    parent = {"type": "subscription_item_details", "invoice_item_details": None,
              "subscription_item_details": {"invoice_item": None, "proration": False,
                                            "proration_details": {"credited_items": None},
                                            "subscription": sub["id"], "subscription_item": item["id"]}}
    period = {"start": item["current_period_start"], "end": item["current_period_end"]}
    # A subscription line's metadata is the subscription's (Stripe documents it so).
    return _line(inv, amount, price["currency"], description, period, parent, price, item["quantity"],
                 copy.deepcopy(sub["metadata"]), sub["id"])


def item_line(inv: dict, ii: dict) -> dict:
    sub_id = ii["parent"]["subscription_details"]["subscription"] if ii["parent"] else None
    parent = {"type": "invoice_item_details", "subscription_item_details": None,
              "invoice_item_details": {"invoice_item": ii["id"], "proration": False,
                                       "proration_details": {"credited_items": None}, "subscription": sub_id}}
    return _line(inv, ii["amount"], ii["currency"], ii["description"] or "", copy.deepcopy(ii["period"]), parent,
                 ii.get("_price"), ii["quantity"], copy.deepcopy(ii["metadata"]), None)


def add_lines(inv: dict, lines: list[dict]) -> None:
    inv["lines"]["data"].extend(lines)
    total = sum(li["amount"] for li in inv["lines"]["data"])
    inv.update(_money(total))


def invoice_item(now: int, customer_id: str, amount: int, currency: str, description: str | None,
                 metadata: dict, quantity: int = 1, price: dict | None = None, subscription_id: str | None = None) -> dict:
    pricing = None
    if price is not None:
        pricing = {"type": "price_details", "price_details": {"price": price["id"], "product": price["product"]},
                   "unit_amount_decimal": str(price["unit_amount"])}
    parent = None
    if subscription_id:
        parent = {"type": "subscription_details",
                  "subscription_details": {"subscription": subscription_id, "subscription_item": None}}
    obj = {"id": new_id("invoiceitem"), "object": "invoiceitem", "amount": amount, "currency": currency,
           "customer": customer_id, "customer_account": None, "date": now, "description": description,
           "discountable": True, "discounts": [], "frozen_fields": None, "invoice": None, "invoicing_rules": None,
           "livemode": False, "metadata": metadata, "net_amount": amount, "parent": parent,
           "period": {"start": now, "end": now}, "pricing": pricing, "proration": False,
           "proration_details": {"credited_items": None, "discount_amounts": []}, "quantity": quantity,
           "quantity_decimal": str(quantity), "tax_rates": [], "test_clock": None}
    if price is not None:
        obj["_price"] = copy.deepcopy(price)
    return obj


def invoice_payment(now: int, inv: dict, pi_id: str) -> dict:
    return {"id": new_id("invoice_payment"), "object": "invoice_payment", "amount_paid": None,
            "amount_requested": inv["amount_due"], "created": now, "currency": inv["currency"], "invoice": inv["id"],
            "is_default": True, "livemode": False, "payment": {"type": "payment_intent", "payment_intent": pi_id},
            "status": "open", "status_transitions": {"canceled_at": None, "paid_at": None}}

