"""Checkout Session creation: Stripe's validation rules and the stored session."""

from __future__ import annotations

import re

from . import objects, strict
from .catalog import price_from_params
from .errors import StripeError, invalid_param, missing_param
from .events import Sandbox
from .forms import get_bool, get_dict, get_int, get_list, get_metadata, get_str

# Which parameters exist (and their kinds) is checked before this module runs, from the SDK's
# SessionCreateParams (sandbox/strict.py); what is left here is Stripe's rules between them.

# Parameters Stripe accepts only in some modes (the SDK's docs: "for Checkout Sessions in
# `subscription` mode", "Can only be set in `payment` and `setup` mode" ...).
MODE_ONLY = {
    "payment_intent_data": ("payment",),
    "invoice_creation": ("payment",),
    "customer_creation": ("payment", "setup"),
    "subscription_data": ("subscription",),
    "payment_method_collection": ("subscription",),
    "setup_intent_data": ("setup",),
    "submit_type": ("payment", "subscription"),
    "saved_payment_method_options": ("payment", "subscription"),
}
# The pinned version's ui_mode values (hosted_page, embedded_page, elements, form; not the
# older `hosted`); the sandbox serves only its own hosted page.
UI_MODE_DEFAULT = "hosted_page"


def ui_modes() -> tuple[str, ...]:
    return tuple(sorted(strict.params_shape(("POST", "/v1/checkout/sessions")).fields["ui_mode"].choices))


# Without `adaptive_pricing[enabled]` Stripe uses the account's Dashboard setting; the sandbox's is off.
ADAPTIVE_PRICING_DEFAULT = False

# Stripe's minimum charge amounts for the common currencies (smallest unit).
MINIMUM_AMOUNTS = {"usd": 50, "eur": 50, "gbp": 30, "cad": 50, "aud": 50, "chf": 50, "jpy": 50, "sek": 300, "nok": 300, "dkk": 250}

MIN_EXPIRY, MAX_EXPIRY = 30 * 60, 24 * 60 * 60
# Allowance for the time between a client computing `now + 1800` and the sandbox receiving it.
EXPIRY_LEEWAY = 10

_URL_RE = re.compile(r"^https?://[^\s/]+", re.I)


def _url(params: dict, key: str) -> str | None:
    value = get_str(params, key, max_len=5000)
    if value is not None and not _URL_RE.match(value):
        raise invalid_param(key, "Not a valid URL", code="url_invalid")
    return value


def _line_items(sb: Sandbox, params: dict, mode: str) -> list[dict]:
    raw = params.get("line_items")
    if raw in (None, "", [], {}):
        raise missing_param("line_items")
    if not isinstance(raw, list):
        raise invalid_param("line_items", "Invalid array: line_items must be an array of hashes.")
    items = []
    for i, li in enumerate(raw):
        base = f"line_items[{i}]"
        if not isinstance(li, dict):
            raise invalid_param(base, f"Invalid hash: {base}")
        price_id = get_str(li, "price", param=f"{base}[price]")
        price_data = get_dict(li, "price_data", param=f"{base}[price_data]")
        if price_id and price_data:
            raise StripeError(400, f"You may only specify one of these parameters: {base}[price], {base}[price_data].",
                              param=f"{base}[price]")
        if price_id:
            price = sb.store.get(price_id, "price")
            if price is None:
                raise StripeError(400, f"No such price: '{price_id}'", code="resource_missing", param=f"{base}[price]")
            if not price["active"]:
                raise invalid_param(f"{base}[price]", f"The price specified ({price_id}) is inactive.")
        elif price_data:
            price = price_from_params(sb, price_data, prefix=f"{base}[price_data]", emit_events=False)
        else:
            raise StripeError(400, f"Missing required param: {base}[price].", code="parameter_missing", param=f"{base}[price]")
        quantity = get_int(li, "quantity", param=f"{base}[quantity]", minimum=0, maximum=999999)
        if quantity is None:
            raise StripeError(400, f"Quantity is required. Add `quantity` to `{base}`", code="parameter_missing",
                              param=f"{base}[quantity]")
        product = sb.store.get(price["product"], "product")
        items.append(objects.line_item(price, quantity, product["name"] if product else ""))
    currencies = {li["currency"] for li in items}
    if len(currencies) > 1:
        raise invalid_param("line_items", "All line items must use the same currency; got " + ", ".join(sorted(currencies)) + ".")
    recurring = [li for li in items if li["price"]["recurring"]]
    if mode == "payment" and recurring:
        raise invalid_param("line_items", "You specified `payment` mode but passed a recurring price. Either switch to "
                            "`subscription` mode or use only one-time prices.")
    if mode == "subscription" and not recurring:
        raise invalid_param("line_items", "You must provide at least one recurring price in `subscription` mode when using prices.")
    return items


def create_session(sb: Sandbox, params: dict) -> dict:
    now = sb.store.now()
    mode = get_str(params, "mode", required=True)
    if mode == "setup":
        raise invalid_param("mode", "The sandbox does not support mode=setup (only payment and subscription).")
    if mode not in ("payment", "subscription"):
        raise invalid_param("mode", f"Invalid mode: must be one of payment, setup, or subscription")
    for name, modes in MODE_ONLY.items():
        if params.get(name) not in (None, "", {}, []) and mode not in modes:
            raise invalid_param(name, f"You can not pass `{name}` in `{mode}` mode.")
    ui_mode = get_str(params, "ui_mode") or UI_MODE_DEFAULT
    if ui_mode not in ui_modes():
        *head, tail = ui_modes()
        raise invalid_param("ui_mode", f"Invalid ui_mode: must be one of {', '.join(head)}, or {tail}")
    if ui_mode != UI_MODE_DEFAULT:
        raise invalid_param("ui_mode", f"The sandbox only serves ui_mode={UI_MODE_DEFAULT} (its page at the session's url).")
    success_url = _url(params, "success_url")
    cancel_url = _url(params, "cancel_url")
    expires_at = get_int(params, "expires_at")
    if expires_at is None:
        expires_at = now + MAX_EXPIRY
    elif expires_at < now + MIN_EXPIRY - EXPIRY_LEEWAY:
        raise invalid_param("expires_at", "The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.")
    elif expires_at > now + MAX_EXPIRY:
        raise invalid_param("expires_at", "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.")
    customer_id = get_str(params, "customer")
    customer_email = get_str(params, "customer_email", max_len=800)
    if customer_id and customer_email:
        raise StripeError(400, "You may only specify one of these parameters: customer, customer_email.", param="customer")
    if customer_id and sb.store.get(customer_id, "customer") is None:
        raise StripeError(400, f"No such customer: '{customer_id}'", code="resource_missing", param="customer")
    client_reference_id = get_str(params, "client_reference_id", max_len=200)
    metadata = get_metadata(params)
    pi_data = get_dict(params, "payment_intent_data")
    if get_str(pi_data, "capture_method") == "manual":
        raise invalid_param("payment_intent_data[capture_method]", "The sandbox does not support manual capture.")
    adaptive_pricing = get_dict(params, "adaptive_pricing")
    adaptive_enabled = get_bool(adaptive_pricing, "enabled", ADAPTIVE_PRICING_DEFAULT, param="adaptive_pricing[enabled]")
    # allowed_payment_method_types filters what Stripe would offer; the sandbox offers exactly those
    pm_types = [str(t) for t in get_list(params, "payment_method_types")] or \
        [str(t) for t in get_list(params, "allowed_payment_method_types")] or ["card"]
    items = _line_items(sb, params, mode)
    currency = items[0]["currency"]
    total = sum(li["amount_total"] for li in items)
    minimum = MINIMUM_AMOUNTS.get(currency)
    if minimum and total < minimum:
        raise invalid_param("line_items", f"The Checkout Session's total amount due must add up to at least "
                            f"{objects.format_amount(minimum, currency)}", code="amount_too_small")
    cs = objects.checkout_session(
        now, mode=mode, currency=currency, amount_total=total, expires_at=expires_at,
        url=f"{sb.public_url}/pay/{{ID}}", success_url=success_url, cancel_url=cancel_url,
        client_reference_id=client_reference_id, customer_id=customer_id, customer_email=customer_email,
        metadata=metadata, payment_method_types=pm_types, locale=get_str(params, "locale"),
        submit_type=get_str(params, "submit_type"), ui_mode=ui_mode, adaptive_pricing=adaptive_enabled)
    cs["_line_items"] = items
    cs["_pi_data"] = {
        "metadata": get_metadata(pi_data, param="payment_intent_data[metadata]"),
        "description": get_str(pi_data, "description"), "receipt_email": get_str(pi_data, "receipt_email"),
        "setup_future_usage": get_str(pi_data, "setup_future_usage"),
        "shipping": get_dict(pi_data, "shipping") or None,
    }
    cs["_subscription_metadata"] = get_metadata(get_dict(params, "subscription_data"), param="subscription_data[metadata]")
    return sb.store.add(cs)


def line_items_list(cs: dict) -> list[dict]:
    return cs.get("_line_items", [])
