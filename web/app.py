"""The Flask application factory. Gunicorn calls ``create_app()`` in each worker process."""
from __future__ import annotations

from flask import Flask, jsonify, request

from core.services import ingress as webhook_ingress
from core.bootstrap import bootstrap
from core.deps import Deps
from web import api, holds_api, pages, plans_api, webhooks
from web.security import install_headers


def create_app(deps: Deps | None = None, queue=None) -> Flask:
    deps = deps or bootstrap()
    if queue is None:
        from broker.event_queue import CeleryEventQueue
        from broker.producer import create_producer

        queue = CeleryEventQueue(create_producer(deps.settings))
    if hasattr(queue, "request_fan_out"):  # commits that wrote outgoing events ask for their fan-out
        deps.outbox_kick.connect(queue.request_fan_out)
    app = Flask(__name__)
    app.config.update(
        TOKENBANK_DEPS=deps,
        TOKENBANK_QUEUE=queue,
        TOKENBANK_REFUSAL_ALERT=webhook_ingress.signature_alert(deps),
        MAX_CONTENT_LENGTH=max(deps.settings.webhook_max_body_bytes, api.MAX_JSON_BYTES) + 1024,
        SEND_FILE_MAX_AGE_DEFAULT=300,
    )
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(plans_api.bp)
    app.register_blueprint(holds_api.bp)
    app.register_blueprint(pages.bp)
    install_headers(app, deps.settings)

    def wants_json() -> bool:
        return request.path.startswith("/api/") or request.path in ("/healthz", "/readyz")

    @app.errorhandler(404)
    def not_found(_):
        if wants_json():
            return jsonify(error="not_found"), 404
        return pages._page("message.html", 404, title="Not found", message="There is no page at this address.")

    @app.errorhandler(405)
    def method_not_allowed(_):
        return jsonify(error="method_not_allowed"), 405

    @app.errorhandler(413)
    def too_large(_):
        return jsonify(error="too_large"), 413

    return app
