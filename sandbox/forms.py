"""Stripe's form encoding: `a[b][0][c]=v`, `expand[]=x`, `expand[0]=x`.

Request bodies (and GET query strings) arrive as flat key/value pairs; this
module turns them into nested dicts and lists the way Stripe's servers do,
plus small typed getters that raise Stripe-shaped errors.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from .errors import StripeError, invalid_param, missing_param

# Parameters whose children are free-form keys, never list indexes.
HASH_PARAMS = {"metadata"}

_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def split_key(key: str) -> list[str]:
    """`line_items[0][price_data][currency]` -> ["line_items", "0", "price_data", "currency"]."""
    m = _KEY_RE.match(key)
    if not m:
        raise StripeError(400, f"Invalid parameter name: {key}", code="parameter_unknown", param=key)
    parts = [m.group(1)]
    rest = m.group(2)
    if rest:
        parts.extend(rest[1:-1].split("]["))
    return parts


def parse_pairs(pairs: list[tuple[str, str]]) -> dict:
    root: dict = {}
    for key, value in pairs:
        parts = split_key(key)
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":  # `name[]` appends
                part = str(len(node))
            if last:
                if isinstance(node.get(part), dict):
                    raise StripeError(400, f"Invalid value for {key}: it is both a hash and a scalar.", param=key)
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise StripeError(400, f"Invalid value for {key}: it is both a hash and a scalar.", param=key)
                node = child
    return _listify(root, None)


def _listify(node, name):
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v, k) for k, v in node.items()}
    if name not in HASH_PARAMS and converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def parse_body(raw: bytes | str) -> dict:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    return parse_pairs(parse_qsl(raw, keep_blank_values=True))


# --- typed getters -----------------------------------------------------------

def get_str(params: dict, key: str, required: bool = False, param: str | None = None, max_len: int | None = None):
    param = param or key
    value = params.get(key)
    if value is None or value == "":
        if required:
            raise missing_param(param)
        return None
    if not isinstance(value, str):
        raise invalid_param(param, f"Invalid string: {param} must be a string, not a hash or array.")
    if max_len is not None and len(value) > max_len:
        raise invalid_param(param, f"Invalid string: {value[:20]}...; must be at most {max_len} characters", code="string_too_long")
    return value


def get_int(params: dict, key: str, required: bool = False, param: str | None = None,
            minimum: int | None = None, maximum: int | None = None):
    param = param or key
    value = params.get(key)
    if value is None or value == "":
        if required:
            raise missing_param(param)
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        number = int(value.strip())
    else:
        raise invalid_param(param, f"Invalid integer: {value}")
    if minimum is not None and number < minimum:
        raise invalid_param(param, f"This value must be greater than or equal to {minimum}.")
    if maximum is not None and number > maximum:
        raise invalid_param(param, f"This value must be less than or equal to {maximum}.")
    return number


def get_bool(params: dict, key: str, default: bool | None = None, param: str | None = None):
    param = param or key
    value = params.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise invalid_param(param, f"Invalid boolean: {value}")


def get_dict(params: dict, key: str, param: str | None = None) -> dict:
    param = param or key
    value = params.get(key)
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise invalid_param(param, f"Invalid object: {param} must be a hash.")
    return value


def get_list(params: dict, key: str, param: str | None = None) -> list:
    param = param or key
    value = params.get(key)
    if value is None or value == "":
        return []
    if isinstance(value, dict):
        # `types[a]=x` style or a non-contiguous index set: keep values in key order
        return list(value.values())
    if not isinstance(value, list):
        return [value]
    return value


def get_metadata(params: dict, key: str = "metadata", param: str | None = None) -> dict:
    """Stripe's metadata rules: at most 50 keys, key <= 40 chars, value <= 500 chars, strings only."""
    param = param or key
    meta = get_dict(params, key, param)
    out = {}
    if len(meta) > 50:
        raise invalid_param(param, "You can specify up to 50 metadata keys.")
    for k, v in meta.items():
        if not isinstance(v, str):
            raise invalid_param(f"{param}[{k}]", f"Invalid value for metadata key {k}: metadata values must be strings.")
        if len(k) > 40:
            raise invalid_param(f"{param}[{k}]", f"Metadata keys can have up to 40 characters, but key {k!r} has {len(k)}.")
        if len(v) > 500:
            raise invalid_param(f"{param}[{k}]", f"Metadata values can have up to 500 characters, but the value for {k!r} has {len(v)}.")
        if v == "":  # an empty value unsets a key
            continue
        out[k] = v
    return out


def reject_unknown(params: dict, allowed: set[str], prefix: str = "") -> None:
    for key in params:
        if key not in allowed:
            name = f"{prefix}[{key}]" if prefix else key
            raise StripeError(400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name)
