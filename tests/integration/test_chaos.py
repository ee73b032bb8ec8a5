"""`make chaos` in small: a few hundred purchases through the whole system under every fault.

Runs ``python -m bench.chaos`` as `make chaos` does (its own Redis, Firestore emulator, Stripe
sandbox, gunicorn, Celery worker and beat, all on free ports and stopped by PID) with 300
purchases: redeliveries, second event ids, refunds and disputes, sent by 16 connections that
re-send every non-2xx answer, while four pool processes, the worker's main process, the web tier
and Redis (its data lost) are killed and Firestore is stalled for 6 s. Then the figures it wrote:
nothing lost, nothing doubled, every balance the sum of its ledger, the inbox all processed.
"""
from __future__ import annotations

import collections
import json
import subprocess
import sys

import pytest

from devstack.processes import ROOT

pytestmark = pytest.mark.slow

EVENTS = 300


@pytest.fixture(autouse=True)
def _clean():
    """The run brings its own Redis and Firestore emulator: nothing of the suite's to clean."""
    yield


@pytest.fixture(scope="module")
def chaos(tmp_path_factory):
    out = tmp_path_factory.mktemp("chaos") / "results.json"
    proc = subprocess.run([sys.executable, "-m", "bench.chaos", "--events", str(EVENTS), "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=420)
    report = json.loads(out.read_text()) if out.exists() else {}
    return proc, report


def test_the_run_passes(chaos):
    proc, report = chaos
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    assert report["correct"] and not report["failures"], report["failures"]


def test_every_fault_was_injected_during_the_sends(chaos):
    _, report = chaos
    faults = collections.Counter(f["fault"] for f in report["faults"])
    assert faults == {"child": 4, "worker": 1, "redis": 1, "firestore": 1, "web": 1}, faults
    assert all(f["during_sends"] for f in report["faults"]), report["faults"]
    injected = [e for e in report["process_exits"] if e["expected"]]
    assert sorted(e["service"] for e in injected) == ["web", "worker"]
    assert all(e.get("new_pid") for e in report["process_exits"]), report["process_exits"]
    # The sweeper saw the broker's Redis come back empty: at the first sweep, and after the restart.
    assert report["logs"]["worker"]["broker_lost_data_seen"] >= 2


def test_nothing_lost_nothing_doubled(chaos):
    _, report = chaos
    f = collections.Counter(report["checks"]["figures"])
    assert report["sends"]["never_accepted"] == 0
    assert f["sessions_accepted"] == EVENTS
    assert f["credited_once"] == EVENTS
    assert f["missing"] == 0 and f["wrong_credit"] == 0
    assert f["doubled"] == 0


def test_every_refund_and_dispute_applied_once_and_balances_are_the_ledger(chaos):
    _, report = chaos
    f = collections.Counter(report["checks"]["figures"])
    assert f["reversal_purchases"] > 0 and f["reversals_applied_once"] == f["reversal_purchases"]
    assert f["reversals_missing"] == 0 and f["reversals_doubled"] == 0
    assert f["disputes"] > 0 and f["disputes_as_expected"] == f["disputes"] and f["frozen_wrong"] == 0
    assert f["users"] == EVENTS // 4
    assert f["balance_not_ledger"] == 0 and f["balance_not_expected"] == 0


def test_the_inbox_is_all_processed_with_no_dead_letter_and_no_reconciliation(chaos):
    _, report = chaos
    checks = report["checks"]
    assert checks["inbox_statuses"] == {"processed": report["workload"]["unique_events"]}
    assert checks["inbox_records_missing"] == 0 and checks["ledger_strays"] == 0
    assert report["dead_letters"] == 0
    assert report["logs"]["worker"]["reconcile_runs"] == 0
    assert report["quiescence"]["reached"]
