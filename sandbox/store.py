"""In-memory, thread-safe state of the sandbox: objects, a clock that tests can
advance, idempotency records, and list/pagination helpers.

Every public object is a plain dict shaped like Stripe's. Keys starting with
"_" are the sandbox's private bookkeeping and are stripped before rendering.
"""

from __future__ import annotations

import copy
import itertools
import secrets
import string
import threading
import time
from dataclasses import dataclass, field

from .errors import StripeError, invalid_param, no_such

_ALPHABET = string.ascii_letters + string.digits

# object "type" -> id prefix and the length of the random part
ID_PREFIXES = {
    "product": ("prod_", 14),
    "price": ("price_", 24),
    "customer": ("cus_", 14),
    "checkout.session": ("cs_test_", 58),
    "item": ("li_", 24),
    "payment_intent": ("pi_", 24),
    "charge": ("ch_", 24),
    "refund": ("re_", 24),
    "dispute": ("dp_", 24),
    "payment_method": ("pm_", 24),
    "event": ("evt_", 24),
    "subscription": ("sub_", 24),
    "subscription_item": ("si_", 14),
    "invoice": ("in_", 24),
    "invoiceitem": ("ii_", 24),
    "line_item": ("il_", 24),
    "invoice_payment": ("inpay_", 24),
    "balance_transaction": ("txn_", 24),
    "request": ("req_", 14),
    "billing_portal.configuration": ("bpc_", 24),
    "billing_portal.session": ("bps_", 24),
}

# id prefix -> object type, for expansion and lookups
PREFIX_TYPES = {prefix: kind for kind, (prefix, _) in ID_PREFIXES.items()}


def new_id(kind: str) -> str:
    prefix, length = ID_PREFIXES[kind]
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def public(obj):
    """A deep copy without the private "_" keys (at any depth of dicts)."""
    if isinstance(obj, dict):
        return {k: public(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [public(v) for v in obj]
    return copy.deepcopy(obj)


@dataclass
class IdempotencyRecord:
    method: str
    path: str
    fingerprint: tuple
    in_progress: bool = True
    status: int = 0
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    request_id: str = ""


class Store:
    def __init__(self):
        self.lock = threading.RLock()
        self.objects: dict[str, dict] = {}
        self.by_type: dict[str, list[str]] = {}
        self._seq = itertools.count(1)
        self.clock_offset = 0
        self.idempotency: dict[tuple, IdempotencyRecord] = {}
        self.unknown_requests: list[dict] = []

    # --- clock ---------------------------------------------------------------
    def now(self) -> int:
        return int(time.time()) + self.clock_offset

    def advance(self, seconds: int) -> int:
        with self.lock:
            self.clock_offset += int(seconds)
            return self.now()

    # --- objects -------------------------------------------------------------
    def add(self, obj: dict) -> dict:
        with self.lock:
            obj["_seq"] = next(self._seq)
            self.objects[obj["id"]] = obj
            self.by_type.setdefault(obj["object"], []).append(obj["id"])
            return obj

    def get(self, obj_id: str | None, kind: str | None = None) -> dict | None:
        if not obj_id or not isinstance(obj_id, str):
            return None
        obj = self.objects.get(obj_id)
        if obj is None or (kind and obj["object"] != kind):
            return None
        return obj

    def require(self, obj_id: str | None, kind: str, label: str | None = None, param: str = "id") -> dict:
        obj = self.get(obj_id, kind)
        if obj is None:
            raise no_such(label or kind.split(".")[-1], str(obj_id), param=param)
        return obj

    def newest_first(self, kind: str) -> list[dict]:
        ids = self.by_type.get(kind, [])
        return [self.objects[i] for i in reversed(ids)]

    def reset(self) -> None:
        with self.lock:
            self.objects.clear()
            self.by_type.clear()
            self.idempotency.clear()
            self.unknown_requests.clear()
            self.clock_offset = 0


# --- lists -------------------------------------------------------------------

def created_filter(value) -> callable:
    """`created=123` or `created[gte|gt|lte|lt]=123` as a predicate on an int."""
    if value is None or value == "":
        return lambda _ts: True
    if isinstance(value, str):
        try:
            exact = int(value)
        except ValueError:
            raise invalid_param("created", f"Invalid integer: {value}")
        return lambda ts: ts == exact
    if not isinstance(value, dict):
        raise invalid_param("created", "Invalid created filter.")
    bounds = {}
    for op, raw in value.items():
        if op not in ("gt", "gte", "lt", "lte"):
            raise StripeError(400, f"Received unknown parameter: created[{op}]", code="parameter_unknown", param=f"created[{op}]")
        try:
            bounds[op] = int(raw)
        except (TypeError, ValueError):
            raise invalid_param(f"created[{op}]", f"Invalid integer: {raw}")

    def pred(ts: int) -> bool:
        return (("gt" not in bounds or ts > bounds["gt"]) and ("gte" not in bounds or ts >= bounds["gte"])
                and ("lt" not in bounds or ts < bounds["lt"]) and ("lte" not in bounds or ts <= bounds["lte"]))
    return pred


def paginate(items: list[dict], params: dict, url: str) -> tuple[list[dict], bool]:
    """Stripe cursor pagination over `items` (already in list order).

    Returns the page and has_more. `starting_after` walks towards the end of the
    list, `ending_before` towards its start (the page keeps list order).
    """
    from .forms import get_int, get_str

    limit = get_int(params, "limit", minimum=1, maximum=100)
    limit = 10 if limit is None else limit
    after = get_str(params, "starting_after")
    before = get_str(params, "ending_before")
    if after and before:
        raise StripeError(400, "You may only specify one of these parameters: ending_before, starting_after.", param="starting_after")
    ids = [o["id"] for o in items]
    if after:
        if after not in ids:
            raise StripeError(400, f"No such object: '{after}' (starting_after)", code="resource_missing", param="starting_after")
        start = ids.index(after) + 1
        page = items[start:start + limit]
        return page, start + limit < len(items)
    if before:
        if before not in ids:
            raise StripeError(400, f"No such object: '{before}' (ending_before)", code="resource_missing", param="ending_before")
        end = ids.index(before)
        start = max(0, end - limit)
        return items[start:end], start > 0
    return items[:limit], limit < len(items)


def list_envelope(data: list, has_more: bool, url: str) -> dict:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}
