"""``POST /api/purchases/{id}/confirm`` is the user's own: only a session this user started is
looked up at Stripe; another user's session or an unknown id is a quiet 404 and enqueues
nothing (issue 8 §2.8: before, both answered 202 and queued a Stripe lookup that failed as an
ERROR task)."""
from __future__ import annotations

from tests.integration.conftest import PROJECT, doc, eventually
from tests.integration.test_user_api import checkout, pay
from tests.support.tokens import bearer


def confirm(client, uid, session_id):
    return client.post(f"/api/purchases/{session_id}/confirm", headers=bearer(uid, PROJECT))


def queued(celery_producer) -> int:
    queue = celery_producer.conf.task_default_queue
    with celery_producer.connection_for_write() as conn:
        return conn.default_channel.client.llen(queue)


def test_a_session_the_user_never_started_is_404_and_queues_nothing(web_client, deps, celery_producer, stripe_sandbox):
    session_id = checkout(web_client, "owner").json["sessionId"]
    before = queued(celery_producer)
    resp = confirm(web_client, "intruder", session_id)
    assert resp.status_code == 404 and resp.json["error"] == "not_found"
    assert queued(celery_producer) == before


def test_an_unknown_session_is_404_and_queues_nothing(web_client, celery_producer):
    before = queued(celery_producer)
    resp = confirm(web_client, "someone", "cs_test_never_created_anywhere")
    assert resp.status_code == 404 and resp.json["error"] == "not_found"
    assert queued(celery_producer) == before


def test_the_users_own_session_is_confirmed(web_client, deps, worker, stripe_sandbox):
    session_id = checkout(web_client, "owner2", "basic").json["sessionId"]
    pay(stripe_sandbox, session_id)
    assert confirm(web_client, "owner2", session_id).status_code == 202
    eventually(lambda: (doc(deps, "purchases", session_id) or {}).get("status") == "fulfilled")
    assert doc(deps, "users", "owner2")["tokenBalance"] == 200
