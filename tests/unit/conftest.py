import socket

import pytest

from tests.unit.fakes import FakeLedgerStore, fake_redis, make_deps


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Unit tests open no sockets: a connect attempt fails the test loudly."""
    def refuse(self, address, *args, **kwargs):
        raise AssertionError(f"unit test tried to connect to {address!r}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture
def store():
    return FakeLedgerStore()


@pytest.fixture
def redis():
    return fake_redis()


@pytest.fixture
def deps(store, redis):
    return make_deps(store, redis)
