"""Operators' commands for outgoing webhooks (``tokenbank endpoints …``, ``tokenbank deliveries …``).

Each returns plain, JSON-ready data and writes an ``ops_log`` entry naming the operator for
every change. A new endpoint's secret and a rotated one are returned once, by the command that
made them; ``list`` never shows a secret. In production an endpoint's URL must be https.
Unknown endpoints and deliveries raise ``UnknownEndpoint`` / ``UnknownDelivery`` (refused).
"""
from __future__ import annotations

import secrets

from core.domain.deliveries import PENDING, Delivery
from core.domain.errors import InvalidRequest, UnknownDelivery, UnknownEndpoint
from core.domain.ids import is_valid_doc_id
from core.domain.webhook_endpoints import Endpoint, Subscriptions, format_secret, new_endpoint

SECRET_BYTES = 32
REPLAY_LIMIT = 1000
SECRET_NOTE = "store this secret now: it is not shown again (tokenbank endpoints rotate-secret makes a new one)"


def _operator(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise InvalidRequest("an operator name is required", "operator")
    return name


def _new_secret() -> str:
    return format_secret(secrets.token_bytes(SECRET_BYTES))


def _endpoint(deps, endpoint_id: str) -> Endpoint:
    endpoint = deps.store.get_endpoint(endpoint_id) if is_valid_doc_id(endpoint_id) else None
    if endpoint is None:
        raise UnknownEndpoint(f"no webhook endpoint {endpoint_id!r}")
    return endpoint


def add(deps, url: str, events: str, low_threshold: int | None, operator: str) -> dict:
    operator, now = _operator(operator), deps.clock()
    secret = _new_secret()
    endpoint = new_endpoint(f"ep_{secrets.token_hex(8)}", url, events, low_threshold, secret, now, operator,
                            https_only=deps.settings.production)
    deps.uow.run(lambda tx: _save(tx, endpoint, new=True))
    deps.store.add_ops_log({"action": "endpoint_add", "endpointId": endpoint.id, "url": endpoint.url,
                            "events": list(endpoint.events), "operator": operator})
    return {**endpoint.public(now), "secret": secret, "note": SECRET_NOTE}


def _save(tx, endpoint: Endpoint, new: bool = False) -> None:
    """The endpoint and, in the same transaction, the subscriptions the fan-out reads."""
    subscriptions = tx.get(Subscriptions, Subscriptions.KEY) or Subscriptions()
    tx.add(endpoint) if new else tx.put(endpoint)
    tx.put(subscriptions.with_endpoint(endpoint))


def list_endpoints(deps) -> list[dict]:
    now = deps.clock()
    return [e.public(now) for e in sorted(deps.store.list_endpoints(), key=lambda e: (e.created_at, e.id))]


def _change(deps, endpoint_id: str, change, action: str, operator: str) -> Endpoint:
    operator = _operator(operator)
    _endpoint(deps, endpoint_id)

    def work(tx) -> Endpoint:
        current = tx.get(Endpoint, endpoint_id)
        if current is None:
            raise UnknownEndpoint(f"no webhook endpoint {endpoint_id!r}")
        changed = change(current, deps.clock(), operator)
        _save(tx, changed)
        return changed

    changed = deps.uow.run(work)
    deps.store.add_ops_log({"action": action, "endpointId": endpoint_id, "operator": operator})
    return changed


def disable(deps, endpoint_id: str, operator: str) -> dict:
    """No new messages for it and its queue stops (what is pending stays pending)."""
    return _change(deps, endpoint_id, lambda e, now, op: e.disable(now, op), "endpoint_disable",
                   operator).public(deps.clock())


def rotate_secret(deps, endpoint_id: str, operator: str) -> dict:
    """A new current secret; the previous ones stay valid 24 h (deliveries carry a signature for each)."""
    secret = _new_secret()
    changed = _change(deps, endpoint_id, lambda e, now, op: e.rotate(secret, now, op), "endpoint_rotate_secret",
                      operator)
    return {**changed.public(deps.clock()), "secret": secret, "note": SECRET_NOTE}


def _delivery_view(d: Delivery) -> dict:
    return {"id": d.id, "endpointId": d.endpoint_id, "messageId": d.message_id, "type": d.type, "userId": d.user_id,
            "seq": d.seq, "status": d.status, "attempts": d.attempts, "queuedAt": d.queued_at,
            "lastAttemptAt": d.last_attempt_at, "lastStatus": d.last_status, "lastError": d.last_error,
            "deadLetteredAt": d.dead_lettered_at, "replays": d.replays}


def failed_deliveries(deps, endpoint_id: str | None, limit: int) -> list[dict]:
    if endpoint_id is not None:
        _endpoint(deps, endpoint_id)
    return [_delivery_view(d) for d in deps.store.dead_deliveries(endpoint_id, limit)]


def replay(deps, queue, delivery_id: str | None, endpoint_id: str | None, operator: str) -> dict:
    """Make one delivery (dead-lettered, or delivered: sent again with the same id) or every dead
    letter of an endpoint pending again, first in the endpoint's queue, and ask for a run."""
    operator = _operator(operator)
    if delivery_id is not None:
        found = deps.store.get_delivery(delivery_id) if is_valid_doc_id(delivery_id) else None
        if found is None:
            raise UnknownDelivery(f"no delivery {delivery_id!r}")
        if found.status == PENDING:
            raise UnknownDelivery(f"delivery {delivery_id!r} is still pending: it needs no replay")
        ids = [found.id]
    else:
        _endpoint(deps, endpoint_id)
        ids = [d.id for d in deps.store.dead_deliveries(endpoint_id, REPLAY_LIMIT)]

    def work(tx, delivery_id: str) -> Delivery | None:
        current = tx.get(Delivery, delivery_id)
        if current is None or current.status == PENDING:
            return None
        replayed = current.replay(deps.clock(), operator)
        tx.put(replayed)
        return replayed

    replayed = [d for d in (deps.uow.run(lambda tx, i=i: work(tx, i)) for i in ids) if d is not None]
    for target in sorted({d.endpoint_id for d in replayed}):
        queue.request_delivery(target)
    deps.store.add_ops_log({"action": "deliveries_replay", "deliveryIds": [d.id for d in replayed],
                            "endpointId": endpoint_id, "operator": operator})
    return {"replayed": len(replayed), "deliveryIds": [d.id for d in replayed]}
