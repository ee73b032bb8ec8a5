"""Products, prices and customers: creation and validation."""

from __future__ import annotations

import re

from . import billing_customers, objects
from .errors import StripeError, invalid_param
from .events import Sandbox, emit
from .forms import get_bool, get_dict, get_int, get_list, get_metadata, get_str

INTERVALS = ("day", "week", "month", "year")


def check_currency(value: str, param: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{3}", value or ""):
        raise invalid_param(param, f"Invalid currency: {value}. Stripe currently supports these currencies: usd, eur, gbp, ...")
    return value.lower()


def create_product(sb: Sandbox, params: dict) -> dict:
    name = get_str(params, "name", required=True)
    prod = objects.product(sb.store.now(), name, description=get_str(params, "description"),
                           metadata=get_metadata(params), active=get_bool(params, "active", True),
                           images=[str(i) for i in get_list(params, "images")])
    sb.store.add(prod)
    emit(sb, "product.created", prod)
    return prod


def price_from_params(sb: Sandbox, params: dict, prefix: str = "", emit_events: bool = True) -> dict:
    """Creates a price from `POST /v1/prices` params or a `line_items[i][price_data]` hash."""
    def p(name: str) -> str:
        return f"{prefix}[{name}]" if prefix else name

    currency = check_currency(get_str(params, "currency", required=True, param=p("currency")), p("currency"))
    unit_amount = get_int(params, "unit_amount", param=p("unit_amount"), minimum=0)
    if unit_amount is None:
        decimal = get_str(params, "unit_amount_decimal", param=p("unit_amount_decimal"))
        if decimal is None:
            raise StripeError(400, f"Missing required param: {p('unit_amount')}.", code="parameter_missing", param=p("unit_amount"))
        try:
            unit_amount = int(float(decimal))
        except ValueError:
            raise invalid_param(p("unit_amount_decimal"), f"Invalid decimal: {decimal}")
    product_id = get_str(params, "product", param=p("product"))
    product_data = get_dict(params, "product_data", param=p("product_data"))
    if product_id and product_data:
        raise StripeError(400, f"You may only specify one of these parameters: {p('product')}, {p('product_data')}.", param=p("product"))
    if product_id:
        if sb.store.get(product_id, "product") is None:
            raise StripeError(400, f"No such product: '{product_id}'", code="resource_missing", param=p("product"))
    elif product_data:
        prod = objects.product(sb.store.now(), get_str(product_data, "name", required=True, param=p("product_data") + "[name]"),
                               description=get_str(product_data, "description"), metadata=get_metadata(product_data),
                               images=[str(i) for i in get_list(product_data, "images")])
        sb.store.add(prod)
        if emit_events:
            emit(sb, "product.created", prod)
        product_id = prod["id"]
    else:
        raise StripeError(400, f"Missing required param: {p('product')}.", code="parameter_missing", param=p("product"))
    recurring = get_dict(params, "recurring", param=p("recurring"))
    if recurring:
        interval = get_str(recurring, "interval", required=True, param=p("recurring") + "[interval]")
        if interval not in INTERVALS:
            raise invalid_param(p("recurring") + "[interval]", f"Invalid recurring[interval]: must be one of {', '.join(INTERVALS)}")
        get_int(recurring, "interval_count", param=p("recurring") + "[interval_count]", minimum=1)
    pr = objects.price(sb.store.now(), product_id, currency, unit_amount, recurring or None,
                       metadata=get_metadata(params), nickname=get_str(params, "nickname"),
                       lookup_key=get_str(params, "lookup_key"), active=get_bool(params, "active", True))
    sb.store.add(pr)
    if emit_events:
        emit(sb, "price.created", pr)
    return pr


def create_customer(sb: Sandbox, params: dict) -> dict:
    cus = objects.customer(sb.store.now(), email=get_str(params, "email", max_len=512), name=get_str(params, "name"),
                           metadata=get_metadata(params), description=get_str(params, "description"),
                           phone=get_str(params, "phone"))
    sb.store.add(cus)
    later = billing_customers.on_create(sb, cus, params)  # payment_method, invoice_settings[default_payment_method]
    emit(sb, "customer.created", cus)
    for event_type, obj in later:
        emit(sb, event_type, obj)
    return cus
