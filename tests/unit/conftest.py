import pytest

from tests.unit.fakes import FakeLedgerStore, fake_redis, make_deps


@pytest.fixture
def store():
    return FakeLedgerStore()


@pytest.fixture
def redis():
    return fake_redis()


@pytest.fixture
def deps(store, redis):
    return make_deps(store, redis)
