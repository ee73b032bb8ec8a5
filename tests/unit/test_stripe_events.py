import json

import pytest

from core.domain.errors import MalformedEvent
from core.domain.stripe_events import parse_event
from tests.unit.fakes import checkout_session, event


def test_parses_an_event_from_text_bytes_or_a_mapping():
    raw = event(checkout_session(session_id="cs_1"), event_id="evt_1")
    for payload in (json.dumps(raw), json.dumps(raw).encode(), raw):
        parsed = parse_event(payload)
        assert (parsed.id, parsed.type, parsed.livemode) == ("evt_1", "checkout.session.completed", False)
        assert parsed.object["id"] == "cs_1"
        assert parsed.created == raw["created"]


def test_odd_created_and_livemode_fall_back_to_safe_values():
    raw = {**event({"id": "cs_1"}), "created": True, "livemode": "yes"}
    parsed = parse_event(raw)
    assert (parsed.created, parsed.livemode) == (0, False)


def without(key, raw=None):
    raw = raw or event({"id": "cs_1"})
    return {k: v for k, v in raw.items() if k != key}


@pytest.mark.parametrize("payload", [
    "not json", b"\xff\xfe", "", "[1, 2]", '"evt_1"', "null", "42",
    json.dumps(without("id")), json.dumps(without("type")), json.dumps(without("data")),
    json.dumps({**event({}), "data": {}}), json.dumps({**event({}), "data": {"object": []}}),
    json.dumps({**event({}), "data": "x"}), json.dumps({**event({}), "type": ""}),
    json.dumps({**event({}), "type": 7}), json.dumps({**event({}), "id": "evt/1"}),
    json.dumps({**event({}), "id": ".."}), json.dumps({**event({}), "id": 12}),
])
def test_anything_but_an_event_object_is_malformed(payload):
    with pytest.raises(MalformedEvent):
        parse_event(payload)
