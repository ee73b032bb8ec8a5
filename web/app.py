"""The Flask application factory. Gunicorn calls ``create_app()`` in each worker process."""
from __future__ import annotations

import logging

from flask import Flask, jsonify, request

from core import webhook_ingress
from core.bootstrap import bootstrap
from core.deps import Deps
from core.errors import EnqueueFailed, WebhookRefused

log = logging.getLogger("tokenbank.web")


def create_app(deps: Deps | None = None, queue=None) -> Flask:
    deps = deps or bootstrap()
    if queue is None:
        from web.event_queue import CeleryEventQueue
        from worker.celery_app import create_celery

        queue = CeleryEventQueue(create_celery(deps.settings))
    app = Flask(__name__)
    app.config["TOKENBANK_DEPS"] = deps
    refusal_alert = webhook_ingress.signature_alert(deps)
    max_body = deps.settings.webhook_max_body_bytes

    @app.post("/api/stripe/webhook")
    def stripe_webhook():
        length = request.content_length
        if length is not None and length > max_body:
            refusal_alert("body too large")
            return jsonify(error="body too large", limit=max_body), 413
        body = request.stream.read(max_body + 1)
        try:
            received = webhook_ingress.receive(deps, queue, body, request.headers.get("Stripe-Signature"),
                                               refusal_alert)
        except WebhookRefused as refused:
            return jsonify(error=refused.reason), refused.status
        except EnqueueFailed:
            return jsonify(error="temporarily unable to accept the event; retry"), 503, {"Retry-After": "5"}
        return jsonify(received=True, id=received.event_id, handled=received.handled), 200

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz():
        checks = {}
        for name, probe in (("redis", deps.redis.ping), ("firestore", deps.store.ping), ("broker", queue.ping)):
            try:
                probe()
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"unavailable: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return jsonify(status="ready" if ready else "not ready", checks=checks), 200 if ready else 503

    @app.errorhandler(404)
    def not_found(_):
        return jsonify(error="not found"), 404

    @app.errorhandler(405)
    def method_not_allowed(_):
        return jsonify(error="method not allowed"), 405

    return app
