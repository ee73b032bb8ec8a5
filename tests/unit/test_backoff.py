"""worker.base_task imports Celery; only its plain backoff function is tested here."""
import pytest
from hypothesis import given, strategies as st

from worker.base_task import backoff_seconds


@given(retries=st.integers(0, 60), base=st.floats(0.01, 10), cap=st.floats(0, 1000))
def test_backoff_is_full_jitter_within_the_capped_exponential(retries, base, cap):
    assert 0 <= backoff_seconds(retries, base, cap) <= min(cap, base * 2 ** retries)


def test_backoff_reaches_the_cap_and_stays_under_it():
    samples = [backoff_seconds(20, 2.0, 600.0) for _ in range(500)]
    assert max(samples) <= 600.0
    assert max(samples) > 300.0  # uniform over [0, 600]: the upper half is hit


def test_backoff_survives_a_huge_retry_count():
    assert 0 <= backoff_seconds(1100, 2.0, 600.0) <= 600.0
