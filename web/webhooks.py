"""Stripe webhook ingress and health probes: verify, enqueue, answer.

Refusals are problem details (web/problems.py) like the rest of the API: a refused webhook
is ``webhook_refused`` with the reason as ``detail`` (Stripe reads only the status).
"""
from __future__ import annotations

import hmac

from flask import Blueprint, current_app, jsonify, request

from core import metrics
from core.services import ingress as webhook_ingress
from core.errors import EnqueueFailed, WebhookRefused
from web.problems import problem

bp = Blueprint("webhooks", __name__)


@bp.post("/api/stripe/webhook")
def stripe_webhook():
    deps, queue = current_app.config["TOKENBANK_DEPS"], current_app.config["TOKENBANK_QUEUE"]
    refusal_alert = current_app.config["TOKENBANK_REFUSAL_ALERT"]
    max_body = deps.settings.webhook_max_body_bytes
    length = request.content_length
    if length is not None and length > max_body:
        metrics.SIGNATURE_FAILURES.labels("body too large").inc()
        refusal_alert("body too large")
        return problem(413, "too_large", f"request body over {max_body} bytes", limit=max_body)
    body = request.stream.read(max_body + 1)
    try:
        received = webhook_ingress.receive(deps, queue, body, request.headers.get("Stripe-Signature"), refusal_alert)
    except WebhookRefused as refused:
        if refused.status == 413:
            return problem(413, "too_large", f"request body over {max_body} bytes", limit=max_body)
        return problem(refused.status, "webhook_refused", refused.reason)
    except EnqueueFailed:
        return problem(503, "unavailable", "temporarily unable to accept the event; retry",
                       headers={"Retry-After": "5"})
    return jsonify(received=True, id=received.event_id, handled=received.handled), 200


@bp.get("/metrics")
def prometheus_metrics():
    token = current_app.config["TOKENBANK_DEPS"].settings.metrics_token
    if token and not hmac.compare_digest(request.headers.get("Authorization", "").encode(),
                                         f"Bearer {token}".encode()):
        return problem(401, "unauthorized", "the metrics token is missing or wrong",
                       headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    body, content_type = metrics.scrape()
    return body, 200, {"Content-Type": content_type}


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    deps, queue = current_app.config["TOKENBANK_DEPS"], current_app.config["TOKENBANK_QUEUE"]
    checks = {}
    for name, probe in (("redis", deps.redis.ping), ("firestore", deps.store.ping), ("broker", queue.ping)):
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # a probe reports, it does not fail the request
            checks[name] = f"unavailable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return jsonify(status="ready" if ready else "not ready", checks=checks), 200 if ready else 503
