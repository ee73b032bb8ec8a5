"""The operators' CLI (admin/cli.py) over core.services.operations, on the in-memory fakes.

The same commands on the real stack: tests/integration/test_operations.py.
"""
from __future__ import annotations

import io
import json

import pytest

from admin.cli import main, parser, run
from tests.unit.fakes import FakeLedgerStore, FakeQueue, make_deps

CHANGES = [["grant", "u1", "5", "--reason", "x"], ["adjust", "u1", "-5", "--reason", "x"], ["ratelimit", "reset", "u1"],
           ["lots", "migrate"], ["lots", "migrate", "--user", "u1"], ["support", "grant", "a@example.com"],
           ["support", "revoke", "u1"],
           ["endpoints", "add", "https://app.test/h", "--events", "tokens.credited"], ["endpoints", "disable", "ep_1"],
           ["endpoints", "rotate-secret", "ep_1"], ["deliveries", "replay", "d_1"],
           ["deliveries", "replay", "--endpoint", "ep_1"]]


class OpsStore(FakeLedgerStore):
    """FakeLedgerStore plus what the CLI reads and writes: events by status and the ops_log."""

    def __init__(self) -> None:
        super().__init__()
        self.ops_log: list[dict] = []

    def list_events(self, status: str, limit: int) -> list[dict]:
        return [{"id": k, **v} for k, v in self.events.items() if v.get("status") == status][:limit]

    def get_event(self, event_id: str):
        return self.events.get(event_id)

    def add_ops_log(self, fields) -> None:
        self.ops_log.append(dict(fields))


@pytest.fixture
def ops_deps(redis):
    return make_deps(OpsStore(), redis)


def cli(deps, queue, *argv):
    out = io.StringIO()
    code = run(parser().parse_args(list(argv)), deps, queue, out)
    return code, json.loads(out.getvalue())


@pytest.mark.parametrize("argv", CHANGES)
def test_a_change_without_an_operator_exits_2_and_names_the_flag(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "usage: tokenbank" in err and "--operator" in err


@pytest.mark.parametrize("argv", CHANGES)
def test_a_blank_operator_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--operator", " "])
    assert exited.value.code == 2
    assert "operator" in capsys.readouterr().err


def test_ratelimit_reset_clears_the_windows_and_logs_the_operator(ops_deps):
    from core import redis_keys

    ops_deps.redis.zadd(redis_keys.velocity("u1"), {"cs_1": 1.0})
    assert cli(ops_deps, FakeQueue(), "ratelimit", "show", "u1")[1]["paidPurchases"] == [["cs_1", 1.0]]
    assert cli(ops_deps, FakeQueue(), "ratelimit", "reset", "u1", "--operator", "alice") == (
        0, {"reset": "u1", "ledger_untouched": True})
    assert cli(ops_deps, FakeQueue(), "ratelimit", "show", "u1")[1]["paidPurchases"] == []
    [entry] = ops_deps.store.ops_log
    assert entry["operator"] == "alice" and entry["userId"] == "u1" and entry["action"] == "ratelimit_reset"


def test_grant_and_adjust_carry_the_operator_as_actor(ops_deps):
    code, posted = cli(ops_deps, FakeQueue(), "grant", "u1", "30", "--reason", "outage", "--create",
                       "--operator", "bob", "--key", "case-1")
    assert code == 0 and posted["balance"] == 30
    assert cli(ops_deps, FakeQueue(), "adjust", "u1", "-10", "--reason", "double", "--operator", "bob")[1]["balance"] == 20
    assert {e["actor"] for e in ops_deps.store.ledger.values()} == {"operator:bob"}


def test_replay_refuses_an_event_without_a_payload_and_replays_dead_letters(ops_deps):
    queue = FakeQueue()
    assert cli(ops_deps, queue, "events", "replay", "evt_unknown")[0] == 1
    ops_deps.store.events["evt_1"] = {"type": "checkout.session.completed", "status": "dead_lettered", "payload": "{}"}
    assert cli(ops_deps, queue, "events", "failed")[1][0]["id"] == "evt_1"
    assert cli(ops_deps, queue, "events", "replay", "--all-failed") == (0, {"replayed": 1})
    assert queue.events == [("evt_1", "checkout.session.completed", "{}")]
    assert ops_deps.store.events["evt_1"]["status"] == "received"  # the sweeper covers a lost replay job


def test_a_replayed_event_is_received_again_before_a_worker_can_take_it(ops_deps):
    """A worker skips an event whose record says it is finished; a fast one takes the job the moment
    it is published, so the record must say ``received`` first (else the replay is a silent no-op)."""
    seen = []

    class Watching(FakeQueue):
        def enqueue_event(self, event_id, event_type, payload, signature):
            seen.append(ops_deps.store.events[event_id]["status"])
            super().enqueue_event(event_id, event_type, payload, signature)

    ops_deps.store.events["evt_1"] = {"type": "checkout.session.completed", "status": "dead_lettered", "payload": "{}"}
    assert cli(ops_deps, Watching(), "events", "replay", "evt_1") == (0, {"replayed": 1})
    assert seen == ["received"]


def test_spooled_dead_letters_are_listed_and_drained(ops_deps):
    from core import redis_keys

    letter = {"event_id": "evt_2", "event_type": "checkout.session.completed", "payload": "{}", "error": "x",
              "attempts": 9}
    ops_deps.redis.lpush(redis_keys.DEAD_LETTER_SPOOL, json.dumps(letter))
    assert cli(ops_deps, FakeQueue(), "events", "failed", "--spooled")[1][0]["event_id"] == "evt_2"
    queue = FakeQueue()
    assert cli(ops_deps, queue, "events", "replay", "--spooled") == (0, {"replayed": 1})
    assert queue.events == [("evt_2", "checkout.session.completed", "{}")]
    assert cli(ops_deps, FakeQueue(), "events", "failed", "--spooled")[1] == []


def test_lots_migrate_gives_an_old_account_its_lots_once_and_logs_the_operator(ops_deps):
    store = ops_deps.store
    store.users["old"] = {"tokenBalance": 30, "totalTokensEarned": 50, "totalTokensSpent": 20}
    store.ledger["grant_a"] = {"userId": "old", "type": "grant", "amount": 50, "createdAt": 1.0}
    store.ledger["spend_b"] = {"userId": "old", "type": "spend", "amount": -20, "createdAt": 2.0}
    assert cli(ops_deps, FakeQueue(), "lots", "migrate", "--user", "old", "--operator", "alice") == (
        0, {"userId": "old", "lotsCreated": 1, "tokensAssigned": 30})
    assert cli(ops_deps, FakeQueue(), "lots", "migrate", "--operator", "alice") == (
        0, {"accounts": 1, "lotsCreated": 0, "tokensAssigned": 0})
    assert store.docs["lots"]["grant_a"]["remaining"] == 30
    assert [(e["action"], e["operator"]) for e in store.ops_log] == [("migrate_lots", "alice")] * 2


def test_support_access_is_granted_and_revoked_by_email_and_logged(ops_deps):
    ops_deps.identity.add("u9", "ops@example.com", claims={"tier": "gold"})
    assert cli(ops_deps, FakeQueue(), "support", "grant", "OPS@example.com", "--operator", "carol") == (
        0, {"uid": "u9", "email": "ops@example.com", "admin": True})
    assert ops_deps.identity.people["u9"].claims == {"tier": "gold", "admin": True}  # other claims kept
    assert cli(ops_deps, FakeQueue(), "support", "revoke", "u9", "--operator", "carol")[1]["admin"] is False
    assert ops_deps.identity.people["u9"].claims == {"tier": "gold"}
    assert [(e["action"], e["operator"], e["userId"]) for e in ops_deps.store.ops_log] == [
        ("support_access_granted", "carol", "u9"), ("support_access_revoked", "carol", "u9")]


def test_support_access_needs_an_auth_account_and_an_operator(ops_deps, capsys):
    with pytest.raises(SystemExit):
        main(["support", "grant", "someone@example.com"])
    assert "--operator" in capsys.readouterr().err
    from core.domain.errors import UnknownUser

    with pytest.raises(UnknownUser):
        cli(ops_deps, FakeQueue(), "support", "grant", "nobody@example.com", "--operator", "carol")
    assert ops_deps.store.ops_log == []


def test_endpoint_commands_add_list_rotate_disable_and_refuse_what_is_wrong(ops_deps, capsys):
    code, made = cli(ops_deps, FakeQueue(), "endpoints", "add", "https://app.test/h", "--events",
                     "tokens.debited,balance.low", "--low-threshold", "10", "--operator", "ann")
    assert code == 0 and made["secret"].startswith("whsec_") and made["events"] == ["tokens.debited", "balance.low"]
    code, listed = cli(ops_deps, FakeQueue(), "endpoints", "list")
    assert code == 0 and [e["id"] for e in listed] == [made["id"]] and made["secret"] not in json.dumps(listed)
    code, rotated = cli(ops_deps, FakeQueue(), "endpoints", "rotate-secret", made["id"], "--operator", "bob")
    assert code == 0 and rotated["secret"] != made["secret"] and rotated["previousSecretValidUntil"]
    code, disabled = cli(ops_deps, FakeQueue(), "endpoints", "disable", made["id"], "--operator", "bob")
    assert code == 0 and disabled["enabled"] is False and disabled["disabledBy"] == "bob"
    assert [e["action"] for e in ops_deps.store.ops_log] == ["endpoint_add", "endpoint_rotate_secret",
                                                             "endpoint_disable"]
    assert cli(ops_deps, FakeQueue(), "deliveries", "failed") == (0, [])


@pytest.mark.parametrize("argv", [["endpoints", "add", "ftp://app.test/h", "--events", "tokens.credited"],
                                  ["endpoints", "add", "https://app.test/h", "--events", "tokens.nope"],
                                  ["endpoints", "add", "https://app.test/h", "--events", "balance.low"]])
def test_bad_endpoints_exit_2_with_the_reason(ops_deps, argv, capsys, monkeypatch):
    monkeypatch.setattr("core.bootstrap.bootstrap", lambda **_: ops_deps)
    assert main([*argv, "--operator", "ann"]) == 2
    assert "tokenbank:" in capsys.readouterr().err and ops_deps.store.docs["webhook_endpoints"] == {}


@pytest.mark.parametrize("argv", [["endpoints", "disable", "ep_nope"], ["deliveries", "replay", "d_nope"]])
def test_unknown_endpoints_and_deliveries_exit_1(ops_deps, argv, capsys, monkeypatch):
    monkeypatch.setattr("core.bootstrap.bootstrap", lambda **_: ops_deps)
    assert main([*argv, "--operator", "ann"]) == 1
    assert "no " in capsys.readouterr().err
