"""Baselines for the web tier, served by gunicorn with web/gunicorn.conf.py (same settings as the real app).

- ``POST /api/stripe/webhook``: a bare Flask endpoint that reads the body and answers JSON,
  the ingress baseline (no verification, no broker).
- ``POST /bench/enqueue``: reads the body and publishes the no-op ``bench.stamp`` task with the
  same Celery configuration as the real web tier: the floor for end-to-end latency
  (HTTP + Flask + publish + Celery delivery), without tokenbank's own work.

Run: gunicorn -c web/gunicorn.conf.py 'bench.bare_app:create_app()'
"""
from __future__ import annotations

from flask import Flask, jsonify, request


def create_app() -> Flask:
    app = Flask(__name__)
    producer = None

    @app.post("/api/stripe/webhook")
    def bare_webhook():
        body = request.get_data()
        return jsonify(received=True, bytes=len(body)), 200

    @app.post("/bench/enqueue")
    def enqueue():
        nonlocal producer
        if producer is None:
            from bench.noop_celery import QUEUE, STAMP, app as celery_app

            producer = (celery_app, STAMP, QUEUE)
        celery_app, name, queue = producer
        body = request.get_data()
        celery_app.send_task(name, args=[request.headers.get("X-Bench-Id", ""), len(body)], queue=queue)
        return jsonify(received=True), 200

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    return app
