"""What ops watch: Prometheus metrics from web and worker, and Flower behind basic auth."""
from __future__ import annotations

import sys

import requests

from devstack import processes
from devstack.processes import wait_until
from devstack import stripe_events as events


def sample(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_credit_moves_the_web_and_worker_metrics(system):
    """Deltas from before this test's own webhook: earlier tests on the same system credit too."""
    worker_url = f"http://127.0.0.1:{system.env['WORKER_METRICS_PORT']}/metrics"
    enqueued = 'tokenbank_webhooks_received_total{outcome="enqueued",type="checkout.session.completed"}'

    def worker(name: str) -> float:
        return sample(requests.get(worker_url, timeout=5).text, name)

    web_before = sample(requests.get(f"{system.base_url}/metrics", timeout=5).text, enqueued)
    tokens_before, latency_before = worker("tokenbank_credited_tokens_total"), worker(
        "tokenbank_webhook_to_credit_seconds_count")
    session = events.checkout_session("metered", "basic")
    body, headers = events.signed(events.event(session), system.secret)
    assert requests.post(f"{system.base_url}/api/stripe/webhook", data=body, headers=headers, timeout=10).ok
    web = requests.get(f"{system.base_url}/metrics", timeout=5)
    assert web.status_code == 200 and web.headers["Content-Type"].startswith("text/plain")
    assert sample(web.text, enqueued) >= web_before + 1
    wait_until(lambda: worker("tokenbank_credited_tokens_total") >= tokens_before + 200, 20,
               what="worker credit metric")
    text = requests.get(worker_url, timeout=5).text
    assert sample(text, "tokenbank_webhook_to_credit_seconds_count") >= latency_before + 1
    assert sample(text, 'tokenbank_credits_total{source="webhook"}') >= 1
    assert 'tokenbank_task_duration_seconds_count{result="done",task="tokenbank.stripe.process_event"}' in text


def test_flower_answers_only_with_basic_auth(system):
    port = processes.free_port()
    flower = processes.start_http_service(
        "flower", [sys.executable, "-m", "celery", "-A", "worker.celery_app", "flower", f"--port={port}",
                   "--address=127.0.0.1", "--basic-auth=ops:s3cret-test"],
        system.env, f"http://127.0.0.1:{port}/healthcheck")
    try:
        url = f"http://127.0.0.1:{port}/"
        assert requests.get(url, timeout=5).status_code == 401
        assert requests.get(url, auth=("ops", "wrong"), timeout=5).status_code == 401
        assert requests.get(url, auth=("ops", "s3cret-test"), timeout=5).status_code == 200
        workers = requests.get(f"http://127.0.0.1:{port}/api/workers?refresh=1", auth=("ops", "s3cret-test"),
                               timeout=15)
        assert workers.status_code == 200
    finally:
        flower.stop()
