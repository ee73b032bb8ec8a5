"""``python -m bench.chaos`` (``make chaos``): the whole system under faults; nothing lost, nothing doubled.

Starts its own Redis (no persistence), Firestore emulator, Stripe sandbox, gunicorn (web.app),
Celery worker and beat on free ports; sends purchases, redeliveries, second event ids, refunds
and disputes as Stripe would (re-sent until 2xx) while killing pool processes, the worker, the
web tier and Redis and stalling Firestore; waits for quiescence and checks Firestore, without
reconciliation. Prints a table, writes artifacts/chaos-<time>-results.json, and exits 0 if
nothing was lost, doubled or mismatched and quiescence came before the deadline, else 1 (3 with
--fail-on-slow when quiescence missed the target); 2: the harness failed; 130: interrupted.
See docs/RELIABILITY.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback

from bench import chaos_check, chaos_report
from bench.chaos_faults import PLAN, Faults
from devstack.processes import free_port
from bench.chaos_send import Sender
from bench.chaos_stack import Stack
from bench.chaos_workload import build
from devstack.processes import ARTIFACTS, ROOT

PROJECT = "demo-tokenbank-chaos"
SECRET = "whsec_tokenbank_chaos_only"
QUEUE = "tokenbank"


class Interrupted(Exception):
    pass


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=2000, help="purchases (Checkout Sessions) to send")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rate", type=float, default=60, help="deliveries released per second (at most)")
    p.add_argument("--min-window", type=float, default=30, help="the sends last at least this many seconds")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--concurrency", type=int, default=4, help="Celery prefork pool processes")
    p.add_argument("--sweep-every", type=float, default=5, help="INBOX_SWEEP_EVERY_SECONDS")
    p.add_argument("--grace", type=float, default=3, help="INBOX_GRACE_SECONDS")
    p.add_argument("--stall", type=float, default=6, help="seconds the Firestore emulator is stopped")
    p.add_argument("--faults", default=",".join(f for _, f in PLAN),
                   help="faults in order (child, worker, redis, firestore, web), spread over the sends")
    p.add_argument("--resend-deadline", type=float, default=120, help="seconds after the send window")
    p.add_argument("--settle", type=float, default=5, help="quiet this long to count as quiescent")
    p.add_argument("--quiescence-deadline", type=float, default=180)
    p.add_argument("--target-seconds", type=float, default=60, help="quiescence after the last fault")
    p.add_argument("--fail-on-slow", action="store_true", help="exit 3 when quiescence misses the target")
    p.add_argument("--json", help="where to write the raw figures (default artifacts/chaos-<time>-results.json)")
    return p.parse_args(argv)


def fault_plan(names: list[str]) -> list[tuple[float, str]]:
    """The faults spread over 8 %..84 % of the send window, in the order given."""
    n = len(names)
    return [(round(0.08 + 0.76 * k / max(1, n - 1), 3), name) for k, name in enumerate(names)]


def service_env(args, ports: dict) -> dict:
    drop = ("TOKENBANK_", "STRIPE_", "CELERY_", "INBOX_", "TASK_", "BROKER_", "PROMETHEUS_", "WORKER_METRICS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update({
        "TOKENBANK_ENV": "test", "PYTHONPATH": str(ROOT), "LOG_LEVEL": "INFO",
        "REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{ports['redis']}/1", "CELERY_QUEUE": QUEUE,
        "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{ports['firestore']}", "GOOGLE_CLOUD_PROJECT": PROJECT,
        "STRIPE_WEBHOOK_SECRET": SECRET, "STRIPE_API_BASE": f"http://127.0.0.1:{ports['sandbox']}",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{ports['web']}",
        "INBOX_SWEEP_EVERY_SECONDS": str(args.sweep_every), "INBOX_GRACE_SECONDS": str(args.grace),
    })
    return env


def git_state() -> str:
    def git(*a):
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "core", "web", "worker", "broker")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes in core/web/worker/broker" if dirty else "")


def run(args, stack: Stack, out: dict) -> None:
    for name in ("redis", "firestore", "sandbox", "web"):
        stack.ports[name] = free_port()
    stack.env = env = service_env(args, stack.ports)
    t = time.monotonic()
    stack.start_redis()
    for proc in (stack.spawn_firestore(), stack.spawn_sandbox()):
        stack.wait_ready(proc)
    for proc in (stack.spawn_web(), stack.spawn_worker(), stack.spawn_beat()):
        stack.wait_ready(proc)
    stack.supervise()
    out["startup_seconds"] = round(time.monotonic() - t, 1)
    print(f"chaos: stack up in {out['startup_seconds']}s: " + ", ".join(f"{k} :{v}" for k, v in stack.ports.items()),
          flush=True)

    import redis
    import stripe
    from google.cloud import firestore

    from core.config import load_settings

    os.environ["FIRESTORE_EMULATOR_HOST"] = env["FIRESTORE_EMULATOR_HOST"]
    db = firestore.Client(project=PROJECT)
    client = stripe.StripeClient(load_settings(env).stripe_secret_key, base_addresses={"api": env["STRIPE_API_BASE"]})
    t = time.monotonic()
    workload = build(args.events, out["tag"], args.seed, client)
    out["workload"] = workload.counts
    print(f"chaos: {workload.counts['deliveries']} deliveries of {workload.counts['unique_events']} events for "
          f"{args.events} purchases and {workload.counts['users']} users ({workload.counts['reversal_events']} "
          f"refund/dispute events; PaymentIntents made in {time.monotonic() - t:.1f}s)", flush=True)

    n = len(workload.deliveries)
    rate = min(args.rate, n / args.min_window)
    sender = Sender(stack.ports["web"], workload.deliveries, SECRET, rate, args.connections)
    faults = Faults(stack, sender, fault_plan([f for f in args.faults.split(",") if f]), args.stall)
    out["_sender"], out["_faults"] = sender, faults
    print(f"chaos: sending for {sender.window:.0f}s at {rate:.0f}/s over {args.connections} connections; "
          f"faults: {[f for _, f in faults.plan]}", flush=True)
    sender.start(args.resend_deadline)
    faults.start()
    sender.wait()
    faults.thread.join(300)
    if faults.error is not None:
        raise RuntimeError(f"fault injection failed: {faults.error!r}")
    sent_done = time.time()
    print(f"chaos: sends done ({sender.done} of {n}); waiting for quiescence", flush=True)
    broker = redis.Redis(port=stack.ports["redis"], db=1, socket_timeout=5)
    quiet = chaos_check.wait_quiescent(db, broker, QUEUE, lambda: True, args.settle,
                                       sent_done + args.quiescence_deadline)
    out["quiescence"] = quiet
    spool = redis.Redis(port=stack.ports["redis"], db=0, socket_timeout=5).llen("tb:deadletter:spool")
    out["broker_at_end"] = {"queued": broker.llen(QUEUE), "unacked": broker.hlen("unacked")}
    accepted = {workload.deliveries[i].event_id for i, at in enumerate(sender.accepted_at) if at is not None}
    out["checks"] = chaos_check.verify(db, workload, accepted, spool)


def main(argv=None) -> int:
    args = parse_args(argv)
    tag = time.strftime("%Y%m%d%H%M%S")
    log_dir = ARTIFACTS / f"chaos-{tag}"
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(log_dir, {}, args.concurrency)
    load = os.getloadavg()
    out = {"tag": tag, "header": {"started": dt.datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
                                  "cores": os.cpu_count(), "python": platform.python_version(), "code": git_state(),
                                  "load_average_before": [round(x, 2) for x in load], "args": vars(args)}}
    print(f"tokenbank chaos run {out['header']['started']}: {os.cpu_count()} cores, load average before "
          f"{load[0]:.2f}, code {out['header']['code']}; logs in {log_dir.relative_to(ROOT)}", flush=True)

    def on_term(signum, frame):
        raise Interrupted(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started, status = time.monotonic(), 0
    try:
        run(args, stack, out)
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"\nchaos: interrupted ({str(exc) or 'Ctrl-C'}); stopping everything", file=sys.stderr, flush=True)
        status = 130
    except Exception:  # noqa: BLE001 - a harness error: report it, stop everything
        traceback.print_exc()
        out["harness_error"] = traceback.format_exc()[-3000:]
        status = 2
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if "_sender" in out:
            out["_sender"].close()
            out["_faults"].resume_firestore()
        stack.stop_all()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    out["run_seconds"] = round(time.monotonic() - started, 1)
    report = chaos_report.build(out, stack, args)
    print(chaos_report.table(report))
    if status == 0:
        status = report["exit_status"]
    path = args.json or ARTIFACTS / f"chaos-{tag}-results.json"
    with open(path, "w") as f:
        json.dump({k: v for k, v in report.items()}, f, indent=2, default=str)
    print(f"\nraw figures: {path}\nexit status {status}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
