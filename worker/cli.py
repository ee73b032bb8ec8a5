"""`tokenbank`: the operators' command line. Each command calls one core function.

    tokenbank events failed [--limit N]
    tokenbank events failed --spooled             (dead letters kept in Redis while Firestore was down)
    tokenbank events replay EVENT_ID | --all-failed | --spooled
    tokenbank ratelimit show UID | reset UID --operator NAME
    tokenbank grant UID AMOUNT --reason TEXT [--key KEY] [--create] --operator NAME
    tokenbank adjust UID AMOUNT --reason TEXT [--key KEY] --operator NAME
    tokenbank reconcile [--hours 72]
    tokenbank audit
    tokenbank user UID

Exit status: 0 done, 1 failed or found problems, 2 bad arguments.
"""
from __future__ import annotations

import argparse
import getpass
import json
import sys
import uuid

from core import redis_keys
from core.ids import is_valid_doc_id


def _uid(value: str) -> str:
    if not is_valid_doc_id(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a valid user id")
    return value


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tokenbank", description="tokenbank operations")
    sub = p.add_subparsers(dest="command", required=True)
    events = sub.add_parser("events", help="dead-lettered Stripe events").add_subparsers(dest="action", required=True)
    failed = events.add_parser("failed", help="list dead-lettered events")
    failed.add_argument("--limit", type=_int, default=50)
    failed.add_argument("--spooled", action="store_true",
                        help="the dead letters spooled to Redis while Firestore was down")
    replay = events.add_parser("replay", help="re-enqueue dead-lettered events (idempotent)")
    target = replay.add_mutually_exclusive_group(required=True)
    target.add_argument("event_id", nargs="?")
    target.add_argument("--all-failed", action="store_true")
    target.add_argument("--spooled", action="store_true", help="replay and drain the Redis spool")
    rl = sub.add_parser("ratelimit", help="a user's purchase windows").add_subparsers(dest="action", required=True)
    rl.add_parser("show").add_argument("uid", type=_uid)
    reset = rl.add_parser("reset")
    reset.add_argument("uid", type=_uid)
    reset.add_argument("--operator", default=None)
    for name in ("grant", "adjust"):
        cmd = sub.add_parser(name, help=f"{name} tokens (a ledger entry with the operator's name)")
        cmd.add_argument("uid", type=_uid)
        cmd.add_argument("amount", type=_int)
        cmd.add_argument("--reason", required=True)
        cmd.add_argument("--key", default=None, help="idempotency key (default: a new one)")
        cmd.add_argument("--operator", default=None)
        if name == "grant":
            cmd.add_argument("--create", action="store_true", help="allow a new account")
    rec = sub.add_parser("reconcile", help="compare the last hours of Stripe with our records")
    rec.add_argument("--hours", type=_int, default=72)
    sub.add_parser("audit", help="check every balance against its ledger")
    sub.add_parser("user", help="balance, totals, last entries, alerts").add_argument("uid", type=_uid)
    return p


def _operator(args) -> str:
    return args.operator or getpass.getuser()


def _progress(label: str):
    if not sys.stderr.isatty():
        return None

    def show(report) -> None:
        done = getattr(report, "users_checked", None)
        if done is None:
            done = report.counts.get("sessions_seen", 0)
        sys.stderr.write(f"\r{label}: {done} checked")
        sys.stderr.flush()
    return show


def run(args, deps, queue, out) -> int:
    def emit(obj) -> None:
        out.write(json.dumps(obj, indent=2, default=str) + "\n")

    if args.command == "events" and args.action == "failed" and args.spooled:
        spooled = [json.loads(raw) for raw in deps.redis.lrange(redis_keys.DEAD_LETTER_SPOOL, 0, args.limit - 1)]
        emit([{k: e.get(k) for k in ("event_id", "event_type", "error", "attempts")} for e in spooled])
        return 0
    if args.command == "events" and args.action == "replay" and args.spooled:
        replayed = 0
        while (raw := deps.redis.rpop(redis_keys.DEAD_LETTER_SPOOL)) is not None:
            letter = json.loads(raw)
            try:
                queue.enqueue_event(letter["event_id"], letter.get("event_type", ""), letter["payload"])
            except Exception:
                deps.redis.rpush(redis_keys.DEAD_LETTER_SPOOL, raw)  # keep it for the next try
                raise
            replayed += 1
        emit({"replayed": replayed})
        return 0
    if args.command == "events" and args.action == "failed":
        emit([{k: e.get(k) for k in ("id", "type", "error", "attempts", "updatedAt")}
              for e in deps.store.list_events("dead_lettered", args.limit)])
        return 0
    if args.command == "events":
        events = (deps.store.list_events("dead_lettered", 1000) if args.all_failed
                  else [{"id": args.event_id, **(deps.store.get_event(args.event_id) or {})}])
        replayed = 0
        for event in events:
            if not event.get("payload"):
                emit({"id": event["id"], "error": "no stored payload: not a dead-lettered event"})
                return 1
            queue.enqueue_event(event["id"], event.get("type", ""), event["payload"])
            deps.store.record_event(event["id"], {"status": "replayed"})
            replayed += 1
        emit({"replayed": replayed})
        return 0
    if args.command == "ratelimit":
        keys = (redis_keys.velocity(args.uid), redis_keys.reservations(args.uid))
        state = {k: deps.redis.zrange(k, 0, -1, withscores=True) for k in keys}
        if args.action == "reset":
            deps.redis.delete(*keys)
            deps.store.add_ops_log({"action": "ratelimit_reset", "userId": args.uid, "operator": _operator(args),
                                    "before": {k: [m for m, _ in v] for k, v in state.items()}})
            emit({"reset": args.uid, "ledger_untouched": True})
            return 0
        emit({"userId": args.uid, "paidPurchases": state[keys[0]], "openCheckouts": state[keys[1]]})
        return 0
    if args.command in ("grant", "adjust"):
        from core import balance_ops

        op = balance_ops.grant if args.command == "grant" else balance_ops.adjust
        extra = {"create_account": args.create} if args.command == "grant" else {}
        posted = op(deps, args.uid, args.amount, args.reason, args.key or f"cli-{uuid.uuid4()}",
                    f"operator:{_operator(args)}", **extra)
        emit(posted.as_dict())
        return 0
    if args.command == "reconcile":
        from core.reconcile import reconcile

        report = reconcile(deps, queue, hours=args.hours, on_progress=_progress("reconcile"))
        emit(report.as_dict())
        return 1 if report.findings and any(f["kind"] != "missed_fulfilment" for f in report.findings) else 0
    if args.command == "audit":
        from core.audit import audit
        from core.jobs import audit_alerts

        report = audit(deps, on_progress=_progress("audit"))
        audit_alerts(deps, report)
        emit({"users": report.users_checked, "entries": report.entries_checked,
              "violations": [v.as_dict() for v in report.violations]})
        return 0 if report.ok else 1
    if args.command == "user":
        from core import accounts

        emit({**accounts.balance(deps, args.uid), "user": deps.store.get_user(args.uid),
              "entries": accounts.transactions(deps, args.uid, 10)["entries"]})
        return 0
    raise AssertionError(args)


def main(argv: list[str] | None = None, out=sys.stdout) -> int:
    args = parser().parse_args(argv)
    from core.balance_ops import KeyConflict, UnknownUser
    from core.bootstrap import bootstrap
    from core.checkout_service import InvalidRequest
    from core.store import InsufficientFunds
    from worker.celery_app import create_celery
    from worker.event_queue import CeleryEventQueue

    deps = bootstrap(configure_logs=False)
    try:
        return run(args, deps, CeleryEventQueue(create_celery(deps.settings)), out)
    except (InvalidRequest, UnknownUser, KeyConflict, InsufficientFunds) as exc:
        print(f"tokenbank: {getattr(exc, 'message', None) or exc}", file=sys.stderr)
        return 2 if isinstance(exc, InvalidRequest) else 1


if __name__ == "__main__":
    sys.exit(main())
