"""Rendering of billing objects: `expand` also names includable fields, which an object has
only when expanded (an invoice's `payments`: its `invoice_payment` records), at the top level,
inside a list (`data.payments`) or under an expanded id (`latest_invoice.payments`).
Everything else is sandbox.api's expansion.
"""

from __future__ import annotations

from .api import render as render_plain
from .billing_objects import INCLUDABLE
from .errors import invalid_param
from .forms import get_list
from .store import list_envelope, paginate


def _walk(s, obj, segment):
    value = obj.get(segment) if isinstance(obj, dict) else None
    return s.store.get(value) if isinstance(value, str) else value


def _include(s, obj: dict, field: str, rest: str) -> dict:
    if field == "payments":
        found = [ip for ip in s.store.newest_first("invoice_payment") if ip["invoice"] == obj["id"]]
        data = [render_plain(s, ip, {"expand": [rest] if rest else []}, in_list=True) for ip in found]
        return list_envelope(data, False, f"/v1/invoice_payments?invoice={obj['id']}")
    raise invalid_param("expand", f"This property cannot be expanded ({field}).")


def render(s, stored: dict, params: dict, in_list: bool = False) -> dict:
    plain, includes = [], []
    for raw in (str(p) for p in get_list(params, "expand")):
        if in_list and not raw.startswith("data."):
            continue
        segments = (raw[len("data."):] if in_list else raw).split(".")
        obj, at = stored, None
        for i, segment in enumerate(segments):
            if segment in INCLUDABLE.get(obj.get("object") if isinstance(obj, dict) else None, ()):
                at = i
                break
            obj = _walk(s, obj, segment)
        if at is None:
            plain.append(raw)
            continue
        if at:
            plain.append(("data." if in_list else "") + ".".join(segments[:at]))
        includes.append((segments[:at], segments[at], ".".join(segments[at + 1:])))
    out = render_plain(s, stored, {**params, "expand": plain}, in_list)
    for prefix, field, rest in includes:
        target, target_out = stored, out
        for segment in prefix:
            target, target_out = _walk(s, target, segment), (target_out or {}).get(segment)
        if isinstance(target, dict) and isinstance(target_out, dict):  # not under a null id
            target_out[field] = _include(s, target, field, rest)
    return out


def respond_list(s, items: list[dict], params: dict, url: str) -> dict:
    page, has_more = paginate(items, params, url)
    return list_envelope([render(s, o, params, in_list=True) for o in page], has_more, url)
