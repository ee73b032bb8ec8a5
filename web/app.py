"""The Flask application factory. Gunicorn calls ``create_app()`` in each worker process."""
from __future__ import annotations

from flask import Flask

from core.services import ingress as webhook_ingress
from core.bootstrap import bootstrap
from core.deps import Deps
from web import admin, api, holds_api, openapi, pages, plans_api, problems, wallet_api, webhooks
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
    app.register_blueprint(wallet_api.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(admin.bp)  # the support console: every route behind web/admin_guard.py
    install_headers(app, deps.settings)

    def page_error(exc):
        if exc.code == 404:
            return pages._page("message.html", 404, title="Not found", message="There is no page at this address.")
        return exc

    problems.install(app, page_error)
    return app
