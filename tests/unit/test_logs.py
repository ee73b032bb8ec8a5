import json
import logging
import sys

from core.logs import JsonFormatter


def record(level=logging.INFO, msg="hello %s", args=("world",), exc_info=None, **extra):
    rec = logging.LogRecord("tokenbank.test", level, __file__, 1, msg, args, exc_info)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_one_json_object_per_record_with_the_cloud_logging_fields():
    line = JsonFormatter("proj").format(record(logging.WARNING))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["severity"] == "WARNING"
    assert entry["message"] == "hello world"
    assert entry["logger"] == "tokenbank.test"
    assert entry["time"].endswith("+00:00")
    assert "msg" not in entry and "args" not in entry and "levelname" not in entry


def test_extras_are_included_and_none_values_left_out():
    entry = json.loads(JsonFormatter().format(record(event_id="evt_1", attempts=2, user_id=None)))
    assert entry["event_id"] == "evt_1" and entry["attempts"] == 2
    assert "user_id" not in entry


def test_trace_becomes_the_cloud_logging_trace_field_with_the_project():
    entry = json.loads(JsonFormatter("tokenbank-prod").format(record(trace="abc123")))
    assert entry["logging.googleapis.com/trace"] == "projects/tokenbank-prod/traces/abc123"
    assert "trace" not in entry


def test_exception_becomes_stack_trace():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record(logging.ERROR, exc_info=exc_info)))
    assert entry["severity"] == "ERROR"
    assert "RuntimeError: boom" in entry["stack_trace"]


def test_values_json_cannot_encode_are_written_as_text():
    entry = json.loads(JsonFormatter().format(record(session=object)))
    assert entry["session"] == str(object)
