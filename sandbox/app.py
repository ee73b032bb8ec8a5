"""The Flask application and the background session expirer."""

from __future__ import annotations

import sys
import threading

from flask import Flask, Response, request

from . import api, billing_portal, billing_routes, checkout_page, control, payments, portal_page, receipts  # noqa: F401 - billing_routes and billing_portal add /v1 routes
from .config import Config
from .events import Sandbox


def create_app(config: Config, public_url: str) -> Flask:
    sandbox = Sandbox.create(config, public_url)
    app = Flask(__name__, static_folder=None)
    app.config["SANDBOX"] = sandbox
    app.register_blueprint(api.bp)
    app.register_blueprint(checkout_page.bp)
    app.register_blueprint(control.bp)
    app.register_blueprint(receipts.bp)
    app.register_blueprint(portal_page.bp)

    @app.get("/healthz")
    def healthz():
        return Response("ok", mimetype="text/plain")

    @app.errorhandler(405)
    def method_not_allowed(e):
        if request.path.startswith("/v1/"):
            return api.unrecognized()
        return e

    return app


def start_expirer(sandbox: Sandbox) -> threading.Event:
    """Expires open sessions whose expires_at has passed, every few moments."""
    stop = threading.Event()

    def loop():
        while not stop.wait(sandbox.config.expirer_interval_seconds):
            try:
                payments.expire_due(sandbox)
            except Exception as exc:  # keep expiring even if one pass fails
                print(f"[sandbox] expirer error: {exc!r}", file=sys.stderr, flush=True)

    threading.Thread(target=loop, name="expirer", daemon=True).start()
    return stop
