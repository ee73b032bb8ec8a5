"""Reconciliation, scheduled jobs and the operators' CLI on the real stack."""
from __future__ import annotations

import io
import json
import time

import pytest

from core.services.jobs import scheduled_audit, scheduled_reconcile
from core.services.reconcile import reconcile
from tests.integration.conftest import doc, docs, eventually
from tests.integration.test_ledger_operations import buy
from tests.integration.test_purchase_pipeline import post
from tests.integration.test_user_api import auth, checkout, pay
from devstack import stripe_events as events
from admin.cli import main, parser, run
from broker.event_queue import CeleryEventQueue


@pytest.fixture
def queue(celery_producer):
    return CeleryEventQueue(celery_producer)


def cli(deps, queue, *argv):
    out = io.StringIO()
    code = run(parser().parse_args(list(argv)), deps, queue, out)
    return code, json.loads(out.getvalue()) if out.getvalue() else None


def test_reconciliation_credits_a_missed_webhook_once_and_a_second_run_enqueues_nothing(
        web_client, deps, worker, queue, stripe_sandbox):
    session_id = checkout(web_client, "missed").json["sessionId"]
    pay(stripe_sandbox, session_id)  # this sandbox delivers no webhook: the webhook is "missed"
    first = reconcile(deps, queue)
    assert session_id in first.enqueued and first.counts["missed_fulfilment"] >= 1
    eventually(lambda: (doc(deps, "users", "missed") or {}).get("tokenBalance") == 50, what="reconciled credit")
    assert doc(deps, "purchases", session_id)["fulfilledBy"]["source"] == "reconciliation"
    second = reconcile(deps, queue)
    assert second.enqueued == [] and second.counts["in_agreement"] >= 1
    assert len(docs(deps, "transactions", userId="missed")) == 1


def test_a_paid_plan_checkout_is_not_reported_as_a_missed_purchase(web_client, deps, queue, stripe_sandbox):
    """Issue 8 §2.5: a plan's tokens come with its invoices; before, each paid plan checkout was a
    ``missed_fulfilment`` finding (four in an hour fired the "webhooks missed" alert)."""
    resp = web_client.post("/api/checkout", json={"planId": "monthly"}, headers=auth("planner"))
    assert resp.status_code == 200, resp.json
    pay(stripe_sandbox, resp.json["sessionId"])
    report = reconcile(deps, queue)
    assert resp.json["sessionId"] not in report.enqueued
    assert not [f for f in report.findings if f.get("sessionId") == resp.json["sessionId"]]
    assert report.counts["plan_sessions"] >= 1


def test_a_scheduled_slot_runs_once_even_with_two_beats(deps, queue):
    assert "skipped" not in scheduled_reconcile(deps, queue)
    assert scheduled_reconcile(deps, queue) == {"skipped": "slot already claimed"}
    assert scheduled_audit(deps)["violations"] == 0
    assert scheduled_audit(deps) == {"skipped": "slot already claimed"}


def test_audit_command_finds_a_tampered_balance_and_alerts(web_client, deps, worker, queue, secret):
    buy(web_client, deps, secret, "tampered", "starter")
    assert cli(deps, queue, "audit")[0] == 0
    deps.store.db.collection("users").document("tampered").update({"tokenBalance": 5000})
    code, report = cli(deps, queue, "audit")
    assert code == 1
    # the balance disagrees with its ledger and with its lots (the lot still holds the 50 bought)
    assert {(v["userId"], v["check"]) for v in report["violations"]} == {("tampered", "balance_equals_ledger"),
                                                                        ("tampered", "balance_equals_lots")}
    alerts = {a["details"]["check"]: a for a in docs(deps, "security_alerts", type="ledger_audit_violation")}
    assert set(alerts) == {"balance_equals_ledger", "balance_equals_lots"}
    assert alerts["balance_equals_ledger"]["details"]["expected"] == 50
    assert alerts["balance_equals_ledger"]["details"]["actual"] == 5000


def test_dead_letters_are_listed_and_replayed_idempotently(web_client, deps, worker, queue, secret):
    deps.redis.set("tb:lock:user:{jammed}", "held", px=60000)
    evt = events.event(events.checkout_session("jammed", "starter"))
    post(web_client, evt, secret)
    eventually(lambda: (doc(deps, "stripe_events", evt["id"]) or {}).get("status") == "dead_lettered", timeout=40)
    code, failed = cli(deps, queue, "events", "failed")
    assert code == 0 and [e["id"] for e in failed] == [evt["id"]]
    deps.redis.delete("tb:lock:user:{jammed}")
    assert cli(deps, queue, "events", "replay", "--all-failed") == (0, {"replayed": 1})
    eventually(lambda: (doc(deps, "users", "jammed") or {}).get("tokenBalance") == 50)
    assert cli(deps, queue, "events", "replay", evt["id"])[0] == 0  # again: still one credit
    time.sleep(1)
    assert doc(deps, "users", "jammed")["tokenBalance"] == 50
    assert cli(deps, queue, "events", "failed")[1] == []
    assert cli(deps, queue, "events", "replay", "evt_unknown")[0] == 1


def test_ratelimit_reset_clears_the_window_logs_the_operator_and_never_touches_the_ledger(
        web_client, deps, worker, queue, secret):
    for _ in range(5):
        buy(web_client, deps, secret, "limited", "starter")
    assert checkout(web_client, "limited").status_code == 429
    code, shown = cli(deps, queue, "ratelimit", "show", "limited")
    assert code == 0 and len(shown["paidPurchases"]) == 5
    assert cli(deps, queue, "ratelimit", "reset", "limited", "--operator", "alice")[0] == 0
    assert checkout(web_client, "limited").status_code == 200
    assert doc(deps, "users", "limited")["tokenBalance"] == 250
    assert len(docs(deps, "transactions", userId="limited")) == 5
    [entry] = docs(deps, "ops_log", action="ratelimit_reset")
    assert entry["operator"] == "alice" and entry["userId"] == "limited"


def test_grant_adjust_and_user_commands_write_ledger_entries_with_the_operator(deps, queue):
    assert cli(deps, queue, "grant", "support-case", "30", "--reason", "outage", "--create",
               "--operator", "bob", "--key", "case-1")[1]["balance"] == 30
    assert cli(deps, queue, "grant", "support-case", "30", "--reason", "outage", "--operator", "bob",
               "--key", "case-1")[1]["replayed"] is True
    assert cli(deps, queue, "adjust", "support-case", "-10", "--reason", "double grant",
               "--operator", "bob")[1]["balance"] == 20
    code, user = cli(deps, queue, "user", "support-case")
    assert code == 0 and user["tokenBalance"] == 20 and len(user["entries"]) == 2
    assert {e["actor"] for e in docs(deps, "transactions", userId="support-case")} == {"operator:bob"}


@pytest.fixture
def operator_shell(monkeypatch, settings):
    """The environment an operator's shell would give the CLI: this test stack's services."""
    for name, value in {"TOKENBANK_ENV": "test", "FIRESTORE_EMULATOR_HOST": settings.firestore_emulator_host,
                        "GOOGLE_CLOUD_PROJECT": settings.google_cloud_project, "REDIS_URL": settings.redis_url,
                        "CELERY_BROKER_URL": settings.broker_url, "CELERY_QUEUE": settings.celery_queue,
                        "STRIPE_API_BASE": settings.stripe_api_base}.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("argv", [[], ["nope"], ["grant", "u"], ["grant", "u", "ten", "--reason", "x"],
                                  ["grant", "a/b", "5", "--reason", "x"], ["events", "replay"],
                                  ["ratelimit", "show"], ["reconcile", "--hours", "x"]])
def test_bad_arguments_exit_2_with_a_message(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage: tokenbank" in capsys.readouterr().err


def test_refused_operations_exit_non_zero(deps, queue, capsys, operator_shell):
    with pytest.raises(Exception):
        cli(deps, queue, "adjust", "nobody-here", "5", "--reason", "x", "--operator", "carol")
    assert main(["grant", "nobody-here", "5", "--reason", "x", "--operator", "carol"]) == 1
    assert main(["grant", "someone", "0", "--reason", "x", "--create", "--operator", "carol"]) == 2
    assert "tokenbank:" in capsys.readouterr().err


def test_dead_letters_spooled_to_redis_are_listed_and_replayed(web_client, deps, worker, queue, secret):
    from core.services.dead_letters import dead_letter_event
    from dataclasses import replace

    class DownStore:
        def record_event(self, *a, **k):
            raise RuntimeError("firestore down")

    evt = events.event(events.checkout_session("spooled", "starter"))
    payload = json.dumps(evt)
    assert dead_letter_event(replace(deps, store=DownStore()), evt["id"], evt["type"], payload,
                             RuntimeError("x"), 9, events.sign(payload, secret)) == "redis"
    code, listed = cli(deps, queue, "events", "failed", "--spooled")
    assert code == 0 and [e["event_id"] for e in listed] == [evt["id"]]
    assert cli(deps, queue, "events", "replay", "--spooled") == (0, {"replayed": 1})
    eventually(lambda: (doc(deps, "users", "spooled") or {}).get("tokenBalance") == 50)
    assert cli(deps, queue, "events", "failed", "--spooled")[1] == []
