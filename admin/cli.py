"""`tokenbank`: the operators' command line. Argument parsing only: each command calls one
function of core.services.operations and prints what it returns (JSON on stdout).

    tokenbank events failed [--limit N]
    tokenbank events failed --spooled             (dead letters kept in Redis while Firestore was down)
    tokenbank events replay EVENT_ID | --all-failed | --spooled
    tokenbank ratelimit show UID | reset UID --operator NAME
    tokenbank grant UID AMOUNT --reason TEXT [--key KEY] [--create] --operator NAME
    tokenbank adjust UID AMOUNT --reason TEXT [--key KEY] --operator NAME
    tokenbank reconcile [--hours 72]
    tokenbank audit
    tokenbank user UID
    tokenbank lots migrate [--user UID] --operator NAME   (lots for accounts older than lots; rerunnable)
    tokenbank support grant|revoke EMAIL_OR_UID --operator NAME   (the support console at /admin)
    tokenbank endpoints add URL --events TYPE[,TYPE…] [--low-threshold N] --operator NAME
    tokenbank endpoints list | disable ID --operator NAME | rotate-secret ID --operator NAME
    tokenbank deliveries failed [--endpoint ID] [--limit N]
    tokenbank deliveries replay DELIVERY_ID | --endpoint ID  --operator NAME

Every command that changes something requires --operator: the name recorded with the change.
Exit status: 0 done, 1 refused or found problems, 2 bad arguments.
"""
from __future__ import annotations

import argparse
import json
import sys

from core.services import endpoints
from core.services import operations as ops


def _uid(value: str) -> str:
    if not ops.is_valid_user_id(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a valid user id")
    return value


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None


def _name(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("the operator's name must not be empty")
    return value.strip()


def _add_operator(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--operator", type=_name, required=True, metavar="NAME",
                     help="your name, recorded with the change (required)")


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
    _add_operator(reset)
    for name in ("grant", "adjust"):
        cmd = sub.add_parser(name, help=f"{name} tokens (a ledger entry with the operator's name)")
        cmd.add_argument("uid", type=_uid)
        cmd.add_argument("amount", type=_int)
        cmd.add_argument("--reason", required=True)
        cmd.add_argument("--key", default=None, help="idempotency key (default: a new one)")
        _add_operator(cmd)
        if name == "grant":
            cmd.add_argument("--create", action="store_true", help="allow a new account")
    rec = sub.add_parser("reconcile", help="compare the last hours of Stripe with our records")
    rec.add_argument("--hours", type=_int, default=72)
    sub.add_parser("audit", help="check every balance against its ledger")
    sub.add_parser("user", help="balance, totals, last entries, alerts").add_argument("uid", type=_uid)
    lots = sub.add_parser("lots", help="token lots").add_subparsers(dest="action", required=True)
    migrate = lots.add_parser("migrate", help="one lot per credit that has none (safe to run again)")
    migrate.add_argument("--user", type=_uid, default=None, help="one account (default: every account)")
    _add_operator(migrate)
    access = sub.add_parser("support", help="who may use the support console (/admin)").add_subparsers(
        dest="action", required=True)
    for name in ("grant", "revoke"):
        cmd = access.add_parser(name, help=f"{name} the admin custom claim")
        cmd.add_argument("who", help="the account's email or uid")
        _add_operator(cmd)
    _webhook_commands(sub)
    return p


def _webhook_commands(sub) -> None:
    ep = sub.add_parser("endpoints", help="where outgoing events are delivered").add_subparsers(dest="action",
                                                                                               required=True)
    add = ep.add_parser("add", help="a new endpoint; prints its signing secret once")
    add.add_argument("url")
    add.add_argument("--events", required=True, metavar="TYPE[,TYPE...]", help="the event types it receives")
    add.add_argument("--low-threshold", type=_int, default=None, metavar="N",
                     help="balance.low fires when a balance falls below N")
    _add_operator(add)
    ep.add_parser("list", help="every endpoint (never its secret)")
    for name, what in (("disable", "stop delivering to it"), ("rotate-secret", "a new secret; the old one stays "
                                                                                 "valid 24 h")):
        cmd = ep.add_parser(name, help=what)
        cmd.add_argument("endpoint_id", metavar="ID")
        _add_operator(cmd)
    dl = sub.add_parser("deliveries", help="outgoing event deliveries").add_subparsers(dest="action", required=True)
    failed = dl.add_parser("failed", help="dead-lettered deliveries")
    failed.add_argument("--endpoint", default=None, metavar="ID")
    failed.add_argument("--limit", type=_int, default=50)
    replay = dl.add_parser("replay", help="deliver again, first in the endpoint's queue")
    target = replay.add_mutually_exclusive_group(required=True)
    target.add_argument("delivery_id", nargs="?", metavar="DELIVERY_ID")
    target.add_argument("--endpoint", default=None, metavar="ID", help="every dead letter of this endpoint")
    _add_operator(replay)


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


def call(args, deps, queue):
    """The one service call a command stands for: plain data, or an ops.Verdict."""
    match args.command, getattr(args, "action", None):
        case "events", "failed":
            return (ops.spooled_dead_letters(deps, args.limit) if args.spooled
                    else ops.dead_letters(deps, args.limit))
        case "events", "replay":
            return (ops.replay_spooled(deps, queue) if args.spooled
                    else ops.replay_dead_letters(deps, queue, args.event_id, args.all_failed))
        case "ratelimit", "show":
            return ops.rate_limit(deps, args.uid)
        case "ratelimit", "reset":
            return ops.reset_rate_limit(deps, args.uid, args.operator)
        case "grant", _:
            return ops.grant(deps, args.uid, args.amount, args.reason, args.key, args.operator, args.create)
        case "adjust", _:
            return ops.adjust(deps, args.uid, args.amount, args.reason, args.key, args.operator)
        case "reconcile", _:
            return ops.reconcile(deps, queue, args.hours, on_progress=_progress("reconcile"))
        case "audit", _:
            return ops.audit(deps, on_progress=_progress("audit"))
        case "user", _:
            return ops.user_summary(deps, args.uid)
        case "lots", "migrate":
            return ops.migrate_lots(deps, args.user, args.operator)
        case "support", ("grant" | "revoke") as action:
            return ops.support_access(deps, args.who, action == "grant", args.operator)
        case "endpoints", "add":
            return endpoints.add(deps, args.url, args.events, args.low_threshold, args.operator)
        case "endpoints", "list":
            return endpoints.list_endpoints(deps)
        case "endpoints", "disable":
            return endpoints.disable(deps, args.endpoint_id, args.operator)
        case "endpoints", "rotate-secret":
            return endpoints.rotate_secret(deps, args.endpoint_id, args.operator)
        case "deliveries", "failed":
            return endpoints.failed_deliveries(deps, args.endpoint, args.limit)
        case "deliveries", "replay":
            return endpoints.replay(deps, queue, args.delivery_id, args.endpoint, args.operator)
    raise AssertionError(args)


def run(args, deps, queue, out) -> int:
    result = call(args, deps, queue)
    verdict = result if isinstance(result, ops.Verdict) else ops.Verdict(result, ok=True)
    out.write(json.dumps(verdict.data, indent=2, default=str) + "\n")
    return 0 if verdict.ok else 1


def main(argv: list[str] | None = None, out=sys.stdout) -> int:
    args = parser().parse_args(argv)
    from broker.event_queue import CeleryEventQueue
    from broker.producer import create_producer
    from core.bootstrap import bootstrap

    deps = bootstrap(configure_logs=False)
    queue = CeleryEventQueue(create_producer(deps.settings))
    deps.outbox_kick.connect(queue.request_fan_out)  # a grant's or an adjustment's events go out at once
    try:
        return run(args, deps, queue, out)
    except ops.REFUSED + ops.BAD_REQUEST as exc:
        print(f"tokenbank: {getattr(exc, 'message', None) or exc}", file=sys.stderr)
        return 2 if isinstance(exc, ops.BAD_REQUEST) else 1


if __name__ == "__main__":
    sys.exit(main())
