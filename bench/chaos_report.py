"""The chaos run's figures: the verdict, the table, what the logs say."""
from __future__ import annotations

import collections

from devstack.processes import ROOT

LOG_MARKS = {
    "worker": {"pool_process_lost_mid_task": "Task handler raised error: WorkerLostError",
               "unrecoverable_error": "Unrecoverable error",
               "transient_retries": "transient failure, retrying", "gave_up": "giving up after",
               "sweep_requeued": "inbox record enqueued again", "broker_lost_data_seen": "lost its data",
               "reconcile_runs": "Task tokenbank.jobs.reconcile[", "unverified_jobs": "unverified job refused",
               "broker_connection_lost": "Connection to broker lost", "restored_unacked": "Restoring",
               "sweep_runs": "Task tokenbank.jobs.sweep_inbox[", "user_lock_waits": "lock not acquired",
               "firestore_lock_timeouts": "Transaction lock timeout"},
    "web": {"enqueue_failed": "enqueue failed", "inbox_write_failed": "inbox write failed"},
    "beat": {"sweeps_sent": "Sending due task sweep-inbox"},
}


def log_counts(stack) -> dict:
    counts: dict = collections.defaultdict(collections.Counter)
    for proc in stack.history:
        text = proc.log_text() if proc.name in LOG_MARKS else ""
        for key, mark in LOG_MARKS.get(proc.name, {}).items():
            counts[proc.name][key] += text.count(mark)
    return {name: dict(c) for name, c in counts.items()}


def build(out: dict, stack, args) -> dict:
    sender, faults = out.get("_sender"), out.get("_faults")
    t0 = sender.started_at if sender else 0.0
    checks = out.get("checks") or {}
    f = collections.Counter(checks.get("figures") or {})
    sends = sender.figures() if sender else {}
    last_2xx = sender.last_accepted_at if sender else 0.0
    fault_rows = [{**r, "at_s": round(r["started_at"] - t0, 2), "took_s": round(r["ended_at"] - r["started_at"], 2),
                   "during_sends": r["started_at"] < last_2xx} for r in (faults.records if faults else [])]
    last_fault = faults.last_fault_at if faults else None
    quiet = out.get("quiescence") or {}
    quiet_at = quiet.get("quiescent_at")
    after_fault = round(quiet_at - last_fault, 1) if quiet_at and last_fault else None
    after_accept = round(quiet_at - sender.last_accepted_at, 1) if quiet_at and sender else None
    statuses = checks.get("inbox_statuses") or {}
    alerts = checks.get("alerts_by_type") or {}
    logs = log_counts(stack)
    dead = statuses.get("dead_lettered", 0) + checks.get("dead_letter_spool", 0) + alerts.get("event_dead_lettered", 0)
    failures = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            failures.append(what)

    if "harness_error" in out or not checks:
        failures.append("the run did not complete (harness error or interruption)")
    else:
        need(quiet_at is not None, "no quiescence before the deadline")
        need(sends.get("never_accepted", 1) == 0, f"{sends.get('never_accepted')} deliveries never answered 2xx")
        need(f["missing"] == 0, f"{f['missing']} accepted sessions not credited (lost)")
        need(f["doubled"] == 0, f"{f['doubled']} sessions credited more than once")
        need(f["wrong_credit"] == 0, f"{f['wrong_credit']} credits with the wrong tokens or user")
        need(f["reversals_missing"] + f["reversals_doubled"] == 0,
             f"refunds/disputes: {f['reversals_missing']} short, {f['reversals_doubled']} applied twice")
        need(f["disputes_as_expected"] == f["disputes"], "disputes not in their expected state")
        need(f["balance_not_ledger"] == 0, f"{f['balance_not_ledger']} users whose balance is not the ledger's sum")
        need(f["balance_not_expected"] == 0, f"{f['balance_not_expected']} users with an unexpected balance")
        need(f["frozen_wrong"] == 0, f"{f['frozen_wrong']} accounts frozen wrongly")
        need(statuses.get("received", 0) == 0, f"{statuses.get('received')} inbox records still received")
        need(set(statuses) <= {"processed"}, f"inbox records not processed: {statuses}")
        need(checks.get("inbox_records_missing") == 0, "accepted events without an inbox record")
        need(dead == 0, f"{dead} dead letters")
        need(checks.get("ledger_strays") == 0, "ledger entries for sessions never sent")
        need(alerts.get("unverified_job", 0) == 0, "unverified job alerts")
        need(logs.get("worker", {}).get("reconcile_runs", 0) == 0, "reconciliation ran")
    correct = not failures
    target_met = after_fault is not None and after_fault <= args.target_seconds
    exit_status = 1 if not correct else 3 if (args.fail_on_slow and not target_met) else 0
    return {
        "header": out.get("header"), "run_seconds": out.get("run_seconds"),
        "startup_seconds": out.get("startup_seconds"),
        "workload": out.get("workload"), "sends": sends, "faults": fault_rows,
        "last_fault_s": round(last_fault - t0, 2) if last_fault else None,
        "process_exits": [{**e, "died_s": round(e["died_at"] - t0, 2)} for e in stack.exits],
        "quiescence": {"reached": quiet_at is not None, "seconds_after_last_fault": after_fault,
                       "seconds_after_last_accepted_delivery": after_accept,
                       "at_s": round(quiet_at - t0, 2) if quiet_at else None, "target_seconds": args.target_seconds,
                       "samples": quiet.get("samples", [])[-20:]},
        "checks": checks, "broker_at_end": out.get("broker_at_end"), "logs": logs, "dead_letters": dead,
        "failures": failures, "correct": correct,
        "quiescence_target_met": target_met, "exit_status": exit_status, "harness_error": out.get("harness_error"),
        "log_dir": str(stack.log_dir.relative_to(ROOT)),
    }


def table(r: dict) -> str:
    c = r.get("checks") or {}
    f = collections.Counter(c.get("figures") or {})
    s = r.get("sends") or {}
    q = r.get("quiescence") or {}
    st = c.get("inbox_statuses") or {}
    w = (r.get("logs") or {}).get("worker", {})
    exits = r.get("process_exits") or []
    unexpected = [e for e in exits if not e["expected"]]
    ok = lambda cond: "PASS" if cond else "FAIL"  # noqa: E731
    rows = [
        ("sessions answered 2xx", f"{f['sessions_accepted']} of {(r.get('workload') or {}).get('purchases')}", "all",
         ok(f["sessions_never_accepted"] == 0)),
        ("deliveries / attempts", f"{s.get('deliveries')} / {s.get('attempts')} (answers {s.get('answers')})", "", ""),
        ("deliveries never answered 2xx", s.get("never_accepted"), "0", ok(s.get("never_accepted") == 0)),
        ("credited exactly once", f"{f['credited_once']} of {f['sessions_accepted']}", "all",
         ok(f["credited_once"] == f["sessions_accepted"])),
        ("missing (lost)", f["missing"] + f["wrong_credit"], "0", ok(f["missing"] + f["wrong_credit"] == 0)),
        ("doubled", f["doubled"], "0", ok(f["doubled"] == 0)),
        ("refunds/disputes applied once", f"{f['reversals_applied_once']} of {f['reversal_purchases']} purchases",
         "all", ok(f["reversals_applied_once"] == f["reversal_purchases"])),
        ("disputes in their final state", f"{f['disputes_as_expected']} of {f['disputes']}; frozen wrongly "
         f"{f['frozen_wrong']}", "all; 0", ok(f["disputes_as_expected"] == f["disputes"] and not f["frozen_wrong"])),
        ("balance = sum of ledger", f"{f['users'] - f['balance_not_ledger']} of {f['users']} users", "all",
         ok(f["balance_not_ledger"] == 0)),
        ("balance = what was bought - reversed", f"{f['users'] - f['balance_not_expected']} of {f['users']} users",
         "all", ok(f["balance_not_expected"] == 0)),
        ("inbox records", f"{c.get('inbox_records')} ({st}); swept again {c.get('inbox_swept_records')}",
         "none received", ok(not st.get("received") and set(st) <= {"processed"})),
        ("dead letters", r.get("dead_letters"), "0", ok(r.get("dead_letters") == 0)),
        ("quiescence after the last fault", f"{q.get('seconds_after_last_fault')} s (after the last 2xx: "
         f"{q.get('seconds_after_last_accepted_delivery')} s)", f"<= {q.get('target_seconds'):.0f} s",
         ok(r.get("quiescence_target_met"))),
        ("faults", ", ".join(f"{x['fault']}@{x['at_s']:.0f}s" for x in r.get("faults") or []), "", ""),
        ("supervisor restarts", f"{len(exits) - len(unexpected)} injected, {len(unexpected)} unexpected "
         f"({sum(e['unrecoverable_error'] for e in unexpected)} 'Unrecoverable error')", "", ""),
        ("worker log", f"pool process lost mid-task {w.get('pool_process_lost_mid_task')}, transient retries "
         f"{w.get('transient_retries')}, sweep re-enqueued {w.get('sweep_requeued')}, broker data loss seen "
         f"{w.get('broker_lost_data_seen')}, user lock waits {w.get('user_lock_waits')}, Firestore lock timeouts "
         f"{w.get('firestore_lock_timeouts')}, reconciliation runs {w.get('reconcile_runs')}", "", ""),
    ]
    widths = [max(len(str(row[i])) for row in rows + [("figure", "measured", "target", "result")]) for i in range(4)]
    widths[1] = min(widths[1], 100)
    lines = [" | ".join(str(h).ljust(wd) for h, wd in zip(("figure", "measured", "target", "result"), widths)),
             "-+-".join("-" * wd for wd in widths)]
    lines += [" | ".join(str(v).ljust(wd) for v, wd in zip(row, widths)) for row in rows]
    verdict = "PASS: nothing lost, nothing doubled" if r.get("correct") else "FAIL: " + "; ".join(r.get("failures"))
    header = r.get("header") or {}
    lines.insert(0, f"\ntokenbank chaos {header.get('started')}: {(r.get('workload') or {}).get('purchases')} "
                    f"purchases, run took {r.get('run_seconds')}s, load average before "
                    f"{header.get('load_average_before')}")
    lines.append(verdict)
    for name, examples in (c.get("problems") or {}).items():
        lines.append(f"  {name} ({c['problem_counts'][name]}): " + "; ".join(examples[:3]))
    return "\n".join(lines)
