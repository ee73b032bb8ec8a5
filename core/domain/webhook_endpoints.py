"""Webhook endpoints: where an app wants its account events, which types, and how they are signed.

Operators configure endpoints (``tokenbank endpoints …``). An endpoint's rules:
- its URL is absolute ``http``/``https`` (``https`` only when ``https_only``: production), names
  a host, and carries no credentials or fragment (the URL is shown in listings and logs);
- it subscribes to known event types only; ``balance.low`` needs a threshold (a positive whole
  number) and a threshold without ``balance.low`` is refused (it would mean nothing);
- its signing secret is Standard Webhooks' format: ``whsec_`` + base64 of 24+ random bytes. It
  is shown once, when made; listings (``public``) never include a secret;
- rotation makes a new current secret and keeps each previous one valid for 24 hours
  (``ROTATION_OVERLAP_SECONDS``): meanwhile every delivery is signed with all of them, so a
  receiver still holding the old secret verifies, and one holding the new one does too;
- a disabled endpoint gets no new messages and its queue is not delivered;
- ``Subscriptions`` (one document) lists what every enabled endpoint subscribed to; it changes in
  the transaction that adds or disables an endpoint, and the fan-out reads it in the transaction
  that queues an account's events, so no event is queued against a stale list of endpoints.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from core.domain.errors import InvalidRequest
from core.domain.outbox import BALANCE_LOW, EVENT_TYPES

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
ROTATION_OVERLAP_SECONDS = 24 * 3600
MAX_URL_LENGTH = 2048
MAX_THRESHOLD = 10 ** 9


@dataclass(frozen=True)
class SigningSecret:
    value: str
    created_at: float
    expires_at: float | None = None  # None: the current secret


@dataclass(frozen=True)
class Endpoint:
    id: str
    url: str
    events: tuple[str, ...]
    secrets: tuple[SigningSecret, ...]  # the current one first
    created_at: float
    created_by: str
    low_threshold: int | None = None
    enabled: bool = True
    disabled_at: float | None = None
    disabled_by: str | None = None
    rotated_at: float | None = None
    rotated_by: str | None = None
    retry_at: float | None = None  # its queue's first message waits until then (it failed)
    failing_since: float | None = None
    last_error: str | None = None

    @property
    def key(self) -> str:
        return self.id

    def signing_secrets(self, now: float) -> list[str]:
        """The secrets a delivery is signed with now: the current one, then previous ones still valid."""
        return [s.value for s in self.secrets if s.expires_at is None or s.expires_at > now]

    def rotate(self, secret: str, now: float, operator: str) -> "Endpoint":
        kept = tuple(replace(s, expires_at=now + ROTATION_OVERLAP_SECONDS if s.expires_at is None else s.expires_at)
                     for s in self.secrets if s.expires_at is None or s.expires_at > now)
        return replace(self, secrets=(SigningSecret(secret, now),) + kept, rotated_at=now, rotated_by=operator)

    def disable(self, now: float, operator: str) -> "Endpoint":
        return self if not self.enabled else replace(self, enabled=False, disabled_at=now, disabled_by=operator)

    def failing(self, now: float, retry_at: float, error: str) -> "Endpoint":
        return replace(self, retry_at=retry_at, failing_since=self.failing_since or now, last_error=error)

    def healthy(self) -> "Endpoint":
        return replace(self, retry_at=None, failing_since=None, last_error=None)

    def public(self, now: float) -> dict[str, Any]:
        """What a listing shows: everything but the secrets (their count and the overlap's end only)."""
        previous = [s.expires_at for s in self.secrets if s.expires_at is not None and s.expires_at > now]
        return {"id": self.id, "url": self.url, "events": list(self.events), "lowThreshold": self.low_threshold,
                "enabled": self.enabled, "addedAt": self.created_at, "addedBy": self.created_by,
                "disabledAt": self.disabled_at, "disabledBy": self.disabled_by, "rotatedAt": self.rotated_at,
                "rotatedBy": self.rotated_by, "previousSecretValidUntil": max(previous) if previous else None,
                "retryAt": self.retry_at, "failingSince": self.failing_since, "lastError": self.last_error}


@dataclass(frozen=True)
class Subscriptions:
    """The enabled endpoints: id -> (event types, balance.low threshold)."""
    endpoints: Mapping[str, tuple[tuple[str, ...], int | None]] = field(default_factory=dict)

    KEY = "enabled"

    @property
    def key(self) -> str:
        return self.KEY

    def with_endpoint(self, endpoint: Endpoint) -> "Subscriptions":
        others = {k: v for k, v in self.endpoints.items() if k != endpoint.id}
        if endpoint.enabled:
            others[endpoint.id] = (tuple(endpoint.events), endpoint.low_threshold)
        return Subscriptions(dict(sorted(others.items())))


def format_secret(raw: bytes) -> str:
    if len(raw) < MIN_SECRET_BYTES:
        raise ValueError(f"a signing secret needs at least {MIN_SECRET_BYTES} random bytes")
    return SECRET_PREFIX + base64.b64encode(raw).decode()


def endpoint_url(value: object, https_only: bool) -> str:
    bad = InvalidRequest("the URL must be an absolute " + ("https" if https_only else "http or https") +
                         " URL with a host, without credentials or a fragment", "url")
    if not isinstance(value, str) or not value or len(value) > MAX_URL_LENGTH or not value.isprintable() \
            or any(ch.isspace() for ch in value):
        raise bad
    try:
        parts = urlsplit(value)
        parts.port  # an invalid port raises ValueError
    except ValueError:
        raise bad from None
    allowed = ("https",) if https_only else ("http", "https")
    if parts.scheme not in allowed or not parts.hostname or parts.username is not None or parts.password is not None \
            or parts.fragment or "#" in value:
        raise bad
    return value


def event_types(value: str | Iterable[str]) -> tuple[str, ...]:
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [n.strip() for n in names if n.strip()]
    unknown = sorted({n for n in names if n not in EVENT_TYPES})
    if not names or unknown:
        raise InvalidRequest(("unknown event type(s): " + ", ".join(unknown) + "; " if unknown else "no event type; ")
                             + "known: " + ", ".join(EVENT_TYPES), "events")
    return tuple(dict.fromkeys(names))


def low_threshold(value: object, events: tuple[str, ...]) -> int | None:
    if value is None:
        if BALANCE_LOW in events:
            raise InvalidRequest("balance.low needs a threshold (--low-threshold N)", "lowThreshold")
        return None
    if BALANCE_LOW not in events:
        raise InvalidRequest("a low-balance threshold applies only to a subscription to balance.low", "lowThreshold")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_THRESHOLD:
        raise InvalidRequest(f"the threshold must be a whole number from 1 to {MAX_THRESHOLD}", "lowThreshold")
    return value


def new_endpoint(endpoint_id: str, url: object, events: str | Iterable[str], threshold: object, secret: str,
                 now: float, operator: str, https_only: bool) -> Endpoint:
    types = event_types(events)
    return Endpoint(endpoint_id, endpoint_url(url, https_only), types, (SigningSecret(secret, now),), now, operator,
                    low_threshold(threshold, types))
