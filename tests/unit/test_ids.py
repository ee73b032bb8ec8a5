import pytest

from core.domain.ids import is_valid_doc_id


@pytest.mark.parametrize("value", ["user_1", "cs_test_a1B2c3", "evt_123", "a", "é" * 64, "x" * 128, "_x_", "a.b", "__x"])
def test_accepts_ordinary_ids(value):
    assert is_valid_doc_id(value)


@pytest.mark.parametrize("value", [
    "", "/", "a/b", "/a", "a/", ".", "..", "__x__", "____",
    "x" * 129, "é" * 65,  # 130 UTF-8 bytes from 65 characters
    " a", "a ", "\ta", "a\n",
    "a\x00b", "a\x07b", "a\x7fb", "a\u200bb",
])
def test_rejects_ids_firestore_would_misread(value):
    assert not is_valid_doc_id(value)


@pytest.mark.parametrize("value", [None, 1, 1.5, b"user_1", ["user_1"], {"id": "user_1"}, True])
def test_rejects_non_strings(value):
    assert not is_valid_doc_id(value)


def test_limit_counts_utf8_bytes_not_characters():
    assert is_valid_doc_id("€" * 42 + "xx")  # 126 + 2 bytes
    assert not is_valid_doc_id("€" * 43)  # 43 characters, 129 bytes
