"""What Stripe accepts, derived from the installed SDK: every request is checked against it.

The pinned `stripe` package carries, for its API version, a TypedDict of parameters for
each method of each resource (`stripe/params/...`) and an annotated class for each object
(`stripe/_charge.py`, `stripe/checkout/_session.py` ...). This module turns them into

- the accepted parameter tree of each route the sandbox serves (names, nesting, lists and
  free-key hashes such as `metadata`; integers, booleans, decimals and closed enums where
  the SDK says so), refusing what is not in it with Stripe's words:
  `Received unknown parameter: line_items[0][colour]` (400 `parameter_unknown`),
  `Invalid integer: abc`, `Invalid boolean: maybe`, `Invalid array`, `Invalid hash`,
  `Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer`;
- the expandable fields of each object, so that `expand[]` names an id field (or an
  includable list such as a session's `line_items`) along a path that exists:
  `This property cannot be expanded (customer_email).`; more than 4 levels is refused.

`ROUTES` maps each route to the params class the SDK's service uses for it and to the
object it answers. It is keyed by (method, rule) with every `<variable>` written `{id}`;
`api_route` (sandbox/api.py) looks the route up on each request. A route without an entry
is served unchecked (with a warning on stderr) and fails
tests/integration/test_sandbox_strictness.py, which also checks each entry against the
SDK's services (`sdk_params_class` tells which class a new route needs).

Empty strings are accepted everywhere (the handlers treat them as absent); required
parameters and cross-parameter rules are left to the handlers.
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import typing_extensions

from .errors import StripeError

# --- shapes: what a parameter accepts ---------------------------------------------------------

@dataclass
class Shape:
    """The accepted values of one parameter (the union of what its SDK type allows).

    scalars: kinds of form values accepted: "str" (any string), "int", "bool",
    "decimal", "enum" (one of `choices`), "any".
    fields: a hash with these keys; values: a hash with free keys (metadata) of this
    shape; item: an array of this shape.
    """
    scalars: set = field(default_factory=set)
    choices: set = field(default_factory=set)
    fields: "dict[str, Shape] | None" = None
    values: "Shape | None" = None
    item: "Shape | None" = None

    @classmethod
    def hash(cls, fields: dict) -> "Shape":
        return cls(fields=fields)


STR = Shape(scalars={"str"})
INT = Shape(scalars={"int"})
EXPAND = Shape(item=STR)

# --- the route registry -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Route:
    """What one route accepts and answers.

    params: dotted path of the SDK's params TypedDict, or a Shape for the sandbox's private
    routes (the CLI's payment_pages) that the SDK does not know.
    returns: the `object` value of what it answers (`checkout.session`, `item` ...).
    is_list: it answers a list of those (expand paths then start with `data.`).
    """
    params: "str | Shape"
    returns: str
    is_list: bool = False


_P = "stripe.params."

ROUTES: dict[tuple[str, str], Route] = {
    # products, prices, customers
    ("POST", "/v1/products"): Route(_P + "_product_create_params.ProductCreateParams", "product"),
    ("GET", "/v1/products"): Route(_P + "_product_list_params.ProductListParams", "product", True),
    ("GET", "/v1/products/{id}"): Route(_P + "_product_retrieve_params.ProductRetrieveParams", "product"),
    ("POST", "/v1/prices"): Route(_P + "_price_create_params.PriceCreateParams", "price"),
    ("GET", "/v1/prices"): Route(_P + "_price_list_params.PriceListParams", "price", True),
    ("GET", "/v1/prices/{id}"): Route(_P + "_price_retrieve_params.PriceRetrieveParams", "price"),
    ("POST", "/v1/customers"): Route(_P + "_customer_create_params.CustomerCreateParams", "customer"),
    ("GET", "/v1/customers"): Route(_P + "_customer_list_params.CustomerListParams", "customer", True),
    ("GET", "/v1/customers/{id}"): Route(_P + "_customer_retrieve_params.CustomerRetrieveParams", "customer"),
    ("POST", "/v1/customers/{id}"): Route(_P + "_customer_update_params.CustomerUpdateParams", "customer"),
    # checkout sessions
    ("POST", "/v1/checkout/sessions"): Route(
        _P + "checkout._session_create_params.SessionCreateParams", "checkout.session"),
    ("GET", "/v1/checkout/sessions"): Route(
        _P + "checkout._session_list_params.SessionListParams", "checkout.session", True),
    ("GET", "/v1/checkout/sessions/{id}"): Route(
        _P + "checkout._session_retrieve_params.SessionRetrieveParams", "checkout.session"),
    ("GET", "/v1/checkout/sessions/{id}/line_items"): Route(
        _P + "checkout._session_line_item_list_params.SessionLineItemListParams", "item", True),
    ("POST", "/v1/checkout/sessions/{id}/expire"): Route(
        _P + "checkout._session_expire_params.SessionExpireParams", "checkout.session"),
    # the private API of Stripe's hosted page that the CLI's checkout triggers call: what
    # they send (payment_method, expected_amount) and what the sandbox reads (email)
    ("GET", "/v1/payment_pages/{id}"): Route(Shape.hash({"expand": EXPAND}), "checkout.session"),
    ("POST", "/v1/payment_pages/{id}/confirm"): Route(Shape.hash(
        {"payment_method": STR, "expected_amount": INT, "email": STR, "expand": EXPAND}), "checkout.session"),
    # payment methods, payment intents
    ("POST", "/v1/payment_methods"): Route(
        _P + "_payment_method_create_params.PaymentMethodCreateParams", "payment_method"),
    ("GET", "/v1/payment_methods/{id}"): Route(
        _P + "_payment_method_retrieve_params.PaymentMethodRetrieveParams", "payment_method"),
    ("POST", "/v1/payment_methods/{id}/attach"): Route(
        _P + "_payment_method_attach_params.PaymentMethodAttachParams", "payment_method"),
    ("POST", "/v1/payment_methods/{id}/detach"): Route(
        _P + "_payment_method_detach_params.PaymentMethodDetachParams", "payment_method"),
    ("POST", "/v1/payment_intents"): Route(
        _P + "_payment_intent_create_params.PaymentIntentCreateParams", "payment_intent"),
    ("GET", "/v1/payment_intents"): Route(
        _P + "_payment_intent_list_params.PaymentIntentListParams", "payment_intent", True),
    ("GET", "/v1/payment_intents/{id}"): Route(
        _P + "_payment_intent_retrieve_params.PaymentIntentRetrieveParams", "payment_intent"),
    ("POST", "/v1/payment_intents/{id}"): Route(
        _P + "_payment_intent_update_params.PaymentIntentUpdateParams", "payment_intent"),
    ("POST", "/v1/payment_intents/{id}/confirm"): Route(
        _P + "_payment_intent_confirm_params.PaymentIntentConfirmParams", "payment_intent"),
    ("POST", "/v1/payment_intents/{id}/cancel"): Route(
        _P + "_payment_intent_cancel_params.PaymentIntentCancelParams", "payment_intent"),
    # charges, refunds, disputes
    ("GET", "/v1/charges"): Route(_P + "_charge_list_params.ChargeListParams", "charge", True),
    ("GET", "/v1/charges/{id}"): Route(_P + "_charge_retrieve_params.ChargeRetrieveParams", "charge"),
    ("POST", "/v1/refunds"): Route(_P + "_refund_create_params.RefundCreateParams", "refund"),
    ("GET", "/v1/refunds"): Route(_P + "_refund_list_params.RefundListParams", "refund", True),
    ("GET", "/v1/refunds/{id}"): Route(_P + "_refund_retrieve_params.RefundRetrieveParams", "refund"),
    ("GET", "/v1/disputes"): Route(_P + "_dispute_list_params.DisputeListParams", "dispute", True),
    ("GET", "/v1/disputes/{id}"): Route(_P + "_dispute_retrieve_params.DisputeRetrieveParams", "dispute"),
    ("POST", "/v1/disputes/{id}"): Route(_P + "_dispute_update_params.DisputeUpdateParams", "dispute"),
    ("POST", "/v1/disputes/{id}/close"): Route(_P + "_dispute_close_params.DisputeCloseParams", "dispute"),
    # events
    ("GET", "/v1/events"): Route(_P + "_event_list_params.EventListParams", "event", True),
    ("GET", "/v1/events/{id}"): Route(_P + "_event_retrieve_params.EventRetrieveParams", "event"),
    # billing: invoices and invoice payments (served today), and the subscription, invoice and
    # invoice item routes Stripe has for them, ready for when the sandbox serves them
    ("GET", "/v1/invoices"): Route(_P + "_invoice_list_params.InvoiceListParams", "invoice", True),
    ("GET", "/v1/invoices/{id}"): Route(_P + "_invoice_retrieve_params.InvoiceRetrieveParams", "invoice"),
    ("POST", "/v1/invoices"): Route(_P + "_invoice_create_params.InvoiceCreateParams", "invoice"),
    ("POST", "/v1/invoices/{id}"): Route(_P + "_invoice_update_params.InvoiceUpdateParams", "invoice"),
    ("DELETE", "/v1/invoices/{id}"): Route(_P + "_invoice_delete_params.InvoiceDeleteParams", "invoice"),
    ("GET", "/v1/invoices/{id}/lines"): Route(
        _P + "_invoice_line_item_list_params.InvoiceLineItemListParams", "line_item", True),
    ("POST", "/v1/invoices/{id}/finalize"): Route(
        _P + "_invoice_finalize_invoice_params.InvoiceFinalizeInvoiceParams", "invoice"),
    ("POST", "/v1/invoices/{id}/pay"): Route(_P + "_invoice_pay_params.InvoicePayParams", "invoice"),
    ("POST", "/v1/invoices/{id}/void"): Route(_P + "_invoice_void_invoice_params.InvoiceVoidInvoiceParams", "invoice"),
    ("POST", "/v1/invoices/{id}/mark_uncollectible"): Route(
        _P + "_invoice_mark_uncollectible_params.InvoiceMarkUncollectibleParams", "invoice"),
    ("GET", "/v1/invoice_payments"): Route(
        _P + "_invoice_payment_list_params.InvoicePaymentListParams", "invoice_payment", True),
    ("GET", "/v1/invoice_payments/{id}"): Route(
        _P + "_invoice_payment_retrieve_params.InvoicePaymentRetrieveParams", "invoice_payment"),
    ("POST", "/v1/invoiceitems"): Route(_P + "_invoice_item_create_params.InvoiceItemCreateParams", "invoiceitem"),
    ("GET", "/v1/invoiceitems"): Route(_P + "_invoice_item_list_params.InvoiceItemListParams", "invoiceitem", True),
    ("GET", "/v1/invoiceitems/{id}"): Route(
        _P + "_invoice_item_retrieve_params.InvoiceItemRetrieveParams", "invoiceitem"),
    ("POST", "/v1/subscriptions"): Route(_P + "_subscription_create_params.SubscriptionCreateParams", "subscription"),
    ("GET", "/v1/subscriptions"): Route(
        _P + "_subscription_list_params.SubscriptionListParams", "subscription", True),
    ("GET", "/v1/subscriptions/{id}"): Route(
        _P + "_subscription_retrieve_params.SubscriptionRetrieveParams", "subscription"),
    ("POST", "/v1/subscriptions/{id}"): Route(
        _P + "_subscription_update_params.SubscriptionUpdateParams", "subscription"),
    ("DELETE", "/v1/subscriptions/{id}"): Route(
        _P + "_subscription_cancel_params.SubscriptionCancelParams", "subscription"),
    ("POST", "/v1/subscriptions/{id}/resume"): Route(
        _P + "_subscription_resume_params.SubscriptionResumeParams", "subscription"),
    # the customer portal
    ("POST", "/v1/billing_portal/sessions"): Route(
        _P + "billing_portal._session_create_params.SessionCreateParams", "billing_portal.session"),
}


@dataclass(frozen=True, eq=False)
class Removed:
    """A parameter the pinned version no longer takes but older versions did.

    A request naming a Stripe-Version from `version` on (the SDK always names the pinned one)
    is refused: with `code` and `message` when Stripe documents them, else as an unknown
    parameter. A request naming an older version, or none (the Stripe CLI 1.52 sends none and
    still passes `payment_method_types[]`), may pass it with this shape.
    """
    version: str
    shape: "Shape"
    code: str | None = None
    message: str | None = None


# 2026-09-30.endive: `payment_method_types` is no longer writable on PaymentIntents (400
# `payment_method_types_no_longer_supported`) and is gone from Checkout Session create; use
# `allowed_payment_method_types` (or `excluded_payment_method_types`, or dynamic payment methods).
_PMT_GONE = Removed("2026-09-30", Shape(item=STR), code="payment_method_types_no_longer_supported",
                    message="`payment_method_types` is not supported on this API version: use "
                            "`allowed_payment_method_types`, `excluded_payment_method_types` or dynamic payment methods.")
REMOVED: dict[tuple[str, str], dict[str, Removed]] = {
    ("POST", "/v1/checkout/sessions"): {"payment_method_types": Removed("2026-09-30", Shape(item=STR))},
    ("POST", "/v1/payment_intents"): {"payment_method_types": _PMT_GONE},
    ("POST", "/v1/payment_intents/{id}"): {"payment_method_types": _PMT_GONE},
    ("POST", "/v1/payment_intents/{id}/confirm"): {"payment_method_types": _PMT_GONE},
}

_RULE_VAR = re.compile(r"<(?:[^<>:]+:)?[^<>]+>|\{[^{}]*\}")


def route_key(method: str, rule: str) -> tuple[str, str]:
    """("get", "/v1/charges/<obj_id>") -> ("GET", "/v1/charges/{id}"); SDK paths
    ("/v1/charges/{charge}") normalise the same way."""
    return method.upper(), _RULE_VAR.sub("{id}", rule)


def route_for(method: str, rule: str) -> Route | None:
    return ROUTES.get(route_key(method, rule))


_NONE = type(None)


class _Unresolved(Exception):
    pass


def _eval(annotation, namespace: dict):
    """A (possibly string or ForwardRef) annotation as a typing object."""
    if isinstance(annotation, typing.ForwardRef):
        annotation = annotation.__forward_arg__
    if isinstance(annotation, str):
        try:
            return eval(annotation, namespace)  # noqa: S307 - the SDK's own annotations
        except NameError as exc:
            raise _Unresolved(str(exc)) from exc
    return annotation


def _union_args(tp) -> tuple | None:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


class _ShapeBuilder:
    def __init__(self):
        self.cache: dict[type, Shape] = {}
        self.unresolved: list[str] = []

    def typeddict(self, cls) -> Shape:
        if cls in self.cache:
            return self.cache[cls]
        shape = Shape(fields={})
        self.cache[cls] = shape  # before recursing: a self-referencing type ends here
        namespace = vars(sys.modules[cls.__module__])
        base = _request_options_annotations()
        for name, annotation in cls.__annotations__.items():
            if name in base and annotation is base[name]:
                continue  # api_key, idempotency_key ...: options of the SDK, never sent
            shape.fields[name] = self.shape(annotation, namespace, f"{cls.__qualname__}.{name}")
        return shape

    def shape(self, annotation, namespace: dict, where: str) -> Shape:
        out = Shape()
        self._merge(out, annotation, namespace, where)
        return out

    def _merge(self, out: Shape, tp, namespace: dict, where: str) -> None:
        try:
            tp = _eval(tp, namespace)
        except _Unresolved as exc:
            self.unresolved.append(f"{where}: {exc}")
            out.scalars.add("any")
            return
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in (typing.NotRequired, typing.Required, typing_extensions.NotRequired,
                      typing_extensions.Required):
            self._merge(out, args[0], namespace, where)
        elif _union_args(tp) is not None:
            args = _union_args(tp)
            if any(_is_enum(a, namespace) for a in args):
                # `Literal['a', 'b']|str`: the SDK's escape for values added in later versions;
                # this version's API takes the listed ones
                args = tuple(a for a in args if _eval(a, namespace) is not str)
            for arg in args:
                self._merge(out, arg, namespace, where)
        elif origin in (typing.Literal, typing_extensions.Literal):
            for value in args:
                if value == "":
                    continue
                out.scalars.add("enum")
                out.choices.add(str(value).lower() if isinstance(value, bool) else str(value))
        elif origin in (list, typing.List):
            out.item = self.shape(args[0] if args else typing.Any, namespace, where + "[]")
        elif origin in (dict, typing.Dict):
            out.values = self.shape(args[1] if len(args) == 2 else typing.Any, namespace, where + "{}")
        elif _is_stripe_object(origin or tp):  # UntypedStripeObject[str]: a hash of free keys
            out.values = self.shape(args[0] if args else typing.Any, namespace, where + "{}")
        elif tp is str:
            out.scalars.add("str")
        elif tp is bool:
            out.scalars.add("bool")
        elif tp is int:
            out.scalars.add("int")
        elif tp in (float, Decimal):
            out.scalars.add("decimal")
        elif tp is _NONE:
            pass
        elif isinstance(tp, type) and typing_extensions.is_typeddict(tp):
            sub = self.typeddict(tp)
            # shared while `sub` may still be filling (a type that contains itself); copied to merge
            out.fields = sub.fields if out.fields is None else {**out.fields, **sub.fields}
        else:  # Any, anything else: not checked
            out.scalars.add("any")


def _is_enum(tp, namespace: dict) -> bool:
    """A Literal with at least one non-empty value (Literal[''] alone only means "may be unset")."""
    try:
        tp = _eval(tp, namespace)
    except _Unresolved:
        return False
    return typing.get_origin(tp) in (typing.Literal, typing_extensions.Literal) and any(
        v != "" for v in typing.get_args(tp))


def _is_stripe_object(tp) -> bool:
    from stripe._stripe_object import StripeObject
    return isinstance(tp, type) and issubclass(tp, StripeObject)


@functools.lru_cache(maxsize=1)
def _request_options_annotations() -> dict:
    from stripe._request_options import RequestOptions
    return dict(RequestOptions.__annotations__)


_BUILDER = _ShapeBuilder()


def _import(dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


@functools.lru_cache(maxsize=None)
def params_shape(key: tuple[str, str]) -> Shape:
    """The accepted parameter tree of a registered route."""
    route = ROUTES[key]
    if isinstance(route.params, Shape):
        return route.params
    return _BUILDER.typeddict(_import(route.params))


def warm() -> None:
    """Reads every registered route's types now (about half a second), not at its first request."""
    for key, route in ROUTES.items():
        params_shape(key)
        resource_class(route.returns)


def unresolved_annotations() -> list[str]:
    """Annotations met so far that could not be read (checked as "anything"); a test wants none."""
    return list(_BUILDER.unresolved)


# --- checking parameters -----------------------------------------------------------------------

def _unknown(name: str) -> StripeError:
    return StripeError(400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name)


def _invalid(name: str, message: str) -> StripeError:
    return StripeError(400, message, param=name)


def _one_of(choices) -> str:
    items = sorted(choices)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + ", or " + items[-1]


_INT_RE = re.compile(r"-?\d+")
_DECIMAL_RE = re.compile(r"-?(\d+\.?\d*|\.\d+)")


def _check_scalar(value: str, shape: Shape, name: str) -> None:
    kinds = shape.scalars
    if not kinds:
        raise _invalid(name, "Invalid array" if shape.item is not None else "Invalid hash")
    if "any" in kinds or "str" in kinds:
        return
    text = value.strip()
    if "int" in kinds and _INT_RE.fullmatch(text):
        return
    if "bool" in kinds and text.lower() in ("true", "false"):
        return
    if "decimal" in kinds and _DECIMAL_RE.fullmatch(text):
        return
    if "enum" in kinds and value in shape.choices:
        return
    if kinds == {"enum"}:
        raise _invalid(name, f"Invalid {name}: must be one of {_one_of(shape.choices)}")
    if "int" in kinds:
        raise _invalid(name, f"Invalid integer: {value}")
    if "bool" in kinds:
        raise _invalid(name, f"Invalid boolean: {value}")
    if "decimal" in kinds:
        raise _invalid(name, f"Invalid decimal: {value}")
    raise _invalid(name, f"Invalid {name}: must be one of {_one_of(shape.choices)}")


def _kind_name(shape: Shape) -> str:
    for kind, label in (("int", "integer"), ("bool", "boolean"), ("decimal", "decimal"), ("enum", "string"),
                        ("str", "string")):
        if kind in shape.scalars:
            return label
    return "value"


def _a(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def check_value(value, shape: Shape, name: str) -> None:
    """Raises Stripe's error for the first thing in `value` that `shape` does not accept."""
    if "any" in shape.scalars:
        return
    if value is None or value == "":
        return  # treated as absent by the handlers
    if isinstance(value, str):
        _check_scalar(value, shape, name)
        return
    if isinstance(value, list):
        if shape.item is not None:
            for i, item in enumerate(value):
                check_value(item, shape.item, f"{name}[{i}]")
            return
        if shape.values is not None:  # a free-key hash whose keys were all digits
            for i, item in enumerate(value):
                check_value(item, shape.values, f"{name}[{i}]")
            return
        if shape.fields is not None:
            raise _invalid(name, "Invalid hash")
        kind = _kind_name(shape)
        raise _invalid(name, f"Invalid {kind}: {name} must be {_a(kind)}, not an array.")
    if isinstance(value, dict):
        if shape.fields is not None:
            for key, sub in value.items():
                child = f"{name}[{key}]"
                if key not in shape.fields:
                    if shape.values is not None:
                        check_value(sub, shape.values, child)
                        continue
                    raise _unknown(child)
                check_value(sub, shape.fields[key], child)
            return
        if shape.values is not None:
            for key, sub in value.items():
                check_value(sub, shape.values, f"{name}[{key}]")
            return
        if shape.item is not None:
            raise _invalid(name, "Invalid array")
        kind = _kind_name(shape)
        raise _invalid(name, f"Invalid {kind}: {name} must be {_a(kind)}, not a hash.")


def _version_date(version: str | None) -> str | None:
    match = re.match(r"\d{4}-\d{2}-\d{2}", version or "")
    return match.group(0) if match else None


def check_params(shape: Shape, params: dict, removed: dict | None = None, api_version: str | None = None) -> None:
    """The top level: each parameter known, each value of the right shape. `removed` are the
    route's parameters gone in the pinned version, accepted when `api_version` is older or None."""
    fields = shape.fields or {}
    for key, value in params.items():
        if key not in fields:
            gone = (removed or {}).get(key)
            if gone is None:
                raise _unknown(key)
            date = _version_date(api_version)
            if date is not None and date >= gone.version:
                if gone.code:
                    raise StripeError(400, gone.message or f"Received unknown parameter: {key}", code=gone.code,
                                      param=key)
                raise _unknown(key)
            check_value(value, gone.shape, key)
            continue
        check_value(value, fields[key], key)


# --- objects and expansion -----------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def resource_class(object_name: str):
    """The SDK's class for an `object` value ("checkout.session" -> stripe.checkout.Session)."""
    from stripe._object_classes import OBJECT_CLASSES
    if object_name not in OBJECT_CLASSES:
        raise KeyError(f"the SDK has no class for object {object_name!r}")
    module, name = OBJECT_CLASSES[object_name]
    return getattr(importlib.import_module(module), name)


@functools.lru_cache(maxsize=None)
def _type_checking_names(module_name: str) -> dict:
    """Names a generated module imports only for type checkers: name -> (module, attribute)."""
    module = sys.modules[module_name]
    try:
        tree = ast.parse(Path(module.__file__).read_text())
    except (OSError, TypeError, SyntaxError):
        return {}
    names = {}
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom) and stmt.module:
                    for alias in stmt.names:
                        names[alias.asname or alias.name] = (stmt.module, alias.name)
    return names


def _resolve_name(owner: type, name: str):
    """A forward reference in `owner`'s annotations, looked up where the SDK defines it."""
    for scope in [c for c in _enclosing(owner)] + [sys.modules[owner.__module__]]:
        if isinstance(getattr(scope, name, None), type):
            return getattr(scope, name)
    found = _type_checking_names(owner.__module__).get(name)
    if found:
        return getattr(importlib.import_module(found[0]), found[1])
    return None


def _enclosing(cls: type) -> list:
    """cls and the classes it is nested in (Session.CustomerDetails -> [CustomerDetails, Session])."""
    module = sys.modules[cls.__module__]
    parts = cls.__qualname__.split(".")
    chain, obj = [], module
    for part in parts:
        obj = getattr(obj, part, None)
        if obj is None:
            break
        chain.append(obj)
    return list(reversed(chain)) or [cls]


def declared_fields(cls: type) -> dict:
    """JSON field name -> annotation, for a StripeObject subclass (inherited fields included)."""
    from stripe._stripe_object import StripeObject
    out: dict = {}
    for klass in reversed(cls.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, StripeObject)):
            continue
        for name, annotation in vars(klass).get("__annotations__", {}).items():
            if name.startswith("_") or name == "OBJECT_NAME" or typing.get_origin(annotation) is typing.ClassVar:
                continue
            out[name] = annotation
    for attr, json_name in getattr(cls, "_field_remappings", {}).items():
        if attr in out:
            out[json_name] = out.pop(attr)
    return out


@dataclass(frozen=True)
class FieldKind:
    kind: str  # "expandable" (an id or its object), "includable" (a list given on request),
    #            "object" (a nested object: a path may go through it), "list" (an array of objects),
    #            "other" (scalars, hashes: neither)
    target: object = None  # the class behind it, when known


def field_kind(owner: type, annotation) -> FieldKind:
    from stripe._list_object import ListObject
    from stripe._stripe_object import StripeObject

    def resolve(tp):
        if isinstance(tp, (str, typing.ForwardRef)):
            name = tp.__forward_arg__ if isinstance(tp, typing.ForwardRef) else tp
            return _resolve_name(owner, name.strip("'\""))
        return tp

    tp = annotation
    args = _union_args(tp)
    if args is not None:
        rest = [a for a in args if a is not _NONE]
        objects = [a for a in rest if a is not str]
        if str in rest and len(objects) == 1 and (isinstance(objects[0], (str, typing.ForwardRef)) or (
                isinstance(objects[0], type) and issubclass(objects[0], StripeObject))):
            return FieldKind("expandable", resolve(objects[0]))
        if len(rest) == 1:
            return field_kind(owner, rest[0])
        return FieldKind("other")
    origin = typing.get_origin(tp)
    if origin is ListObject:
        (item,) = typing.get_args(tp) or (None,)
        return FieldKind("includable", resolve(item))
    if origin in (list, typing.List):
        (item,) = typing.get_args(tp) or (None,)
        inner = field_kind(owner, item) if item is not None else FieldKind("other")
        if inner.kind == "expandable":
            return inner
        if inner.kind == "object":
            return FieldKind("list", inner.target)
        return FieldKind("other")
    tp = resolve(tp)
    if isinstance(tp, type) and issubclass(tp, StripeObject):
        return FieldKind("object", tp)
    return FieldKind("other")


MAX_EXPAND_DEPTH = 4


def _cannot_expand(segments: list[str]) -> StripeError:
    return StripeError(400, f"This property cannot be expanded ({'.'.join(segments)}).")


def check_expand(route: Route, paths: list) -> None:
    """Each `expand` path must name an expandable field along fields that exist."""
    for path in paths:
        if not isinstance(path, str) or path == "":
            continue
        segments = path.split(".")
        if len(segments) > MAX_EXPAND_DEPTH:
            raise StripeError(400, f"You cannot expand more than {MAX_EXPAND_DEPTH} levels of a property.")
        current: object = ("list", resource_class(route.returns)) if route.is_list else resource_class(route.returns)
        for i, segment in enumerate(segments):
            last = i == len(segments) - 1
            if isinstance(current, tuple):  # a list object: only its `data` goes on
                if segment != "data" or last:
                    raise _cannot_expand(segments[:i + 1])
                current = current[1]
                continue
            if current is None:  # the SDK's type is not known beyond here: let it through
                break
            annotation = declared_fields(current).get(segment)
            if annotation is None:
                raise _cannot_expand(segments[:i + 1])
            kind = field_kind(current, annotation)
            if last:
                if kind.kind not in ("expandable", "includable"):
                    raise _cannot_expand(segments[:i + 1])
            elif kind.kind in ("expandable", "object", "list"):
                current = kind.target
            elif kind.kind == "includable":
                current = ("list", kind.target)
            else:
                raise _cannot_expand(segments[:i + 1])


# --- the check api_route runs ---------------------------------------------------------------------

_warned: set = set()


def check_request(method: str, rule: str, params: dict, api_version: str | None = None) -> None:
    """Validates one request's parameters (and expand paths) for the route `rule`;
    `api_version` is the request's Stripe-Version header (None when it names none)."""
    key = route_key("GET" if method.upper() == "HEAD" else method, rule)
    if key not in ROUTES:
        if key not in _warned:
            _warned.add(key)
            print(f"[sandbox] WARNING: {key[0]} {key[1]} has no entry in sandbox/strict.py ROUTES: its "
                  f"parameters are not checked (the SDK's class: {sdk_params_class(*key)})",
                  file=sys.stderr, flush=True)
        return
    check_params(params_shape(key), params, REMOVED.get(key), api_version)
    expand = params.get("expand")
    if isinstance(expand, list):
        check_expand(ROUTES[key], expand)


# --- the SDK's services: which params class a (method, path) uses ------------------------------------

@functools.lru_cache(maxsize=1)
def sdk_routes() -> dict[tuple[str, str], str]:
    """(METHOD, "/v1/path/{id}") -> dotted params class, read from the SDK's service modules."""
    import stripe
    root = Path(stripe.__file__).parent
    out: dict[tuple[str, str], str] = {}
    for path in sorted(root.rglob("_*_service.py")):
        if "v2" in path.relative_to(root).parts:
            continue
        tree = ast.parse(path.read_text())
        imports = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stripe.params"):
                for alias in node.names:
                    imports[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            params_cls = None
            for arg in fn.args.args:
                if arg.arg == "params" and arg.annotation is not None:
                    match = re.search(r"[\"']([A-Za-z_0-9]+)[\"']", ast.unparse(arg.annotation))
                    params_cls = match.group(1) if match else None
            if params_cls is None or params_cls not in imports:
                continue
            for call in ast.walk(fn):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                        and call.func.attr == "_request" and len(call.args) >= 2
                        and isinstance(call.args[0], ast.Constant)):
                    target = call.args[1]
                    if isinstance(target, ast.Call) and isinstance(target.func, ast.Attribute):
                        target = target.func.value  # "/v1/x/{id}".format(...)
                    if isinstance(target, ast.Constant) and isinstance(target.value, str):
                        out[route_key(call.args[0].value, target.value)] = imports[params_cls]
    return out


def sdk_params_class(method: str, path: str) -> str | None:
    return sdk_routes().get(route_key(method, path))


# --- rendered objects: only the fields the SDK declares -----------------------------------------------

def undeclared_fields(obj, cls: type | None = None, path: str = "") -> list[str]:
    """Paths in a rendered object that its SDK class (for the pinned version) does not declare,
    and any private sandbox field (`_...`). Nested objects, lists, expanded objects and event
    snapshots are checked by their own classes."""
    from stripe._object_classes import OBJECT_CLASSES
    problems: list[str] = []
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            problems += undeclared_fields(item, cls, f"{path}[{i}]")
        return problems
    if not isinstance(obj, dict):
        return problems
    kind = obj.get("object")
    if kind == "list" and "data" in obj:
        extra = set(obj) - {"object", "data", "has_more", "url", "total_count"}
        problems += [f"{path}.{k}" for k in sorted(extra)]
        return problems + undeclared_fields(obj["data"], cls, f"{path}.data")
    if isinstance(kind, str) and kind in OBJECT_CLASSES:
        cls = resource_class(kind)
    if cls is None:
        return problems
    fields = declared_fields(cls)
    for key, value in obj.items():
        where = f"{path}.{key}" if path else key
        if key.startswith("_"):
            problems.append(f"{where} (private)")
            continue
        if key not in fields:
            problems.append(where)
            continue
        if isinstance(value, (dict, list)):
            target = field_kind(cls, fields[key]).target
            problems += undeclared_fields(value, target if isinstance(target, type) else None, where)
    return problems
