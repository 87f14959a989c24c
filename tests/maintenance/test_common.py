"""Durations, and one maintenance command at a time."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas_repo.errors import MaintenanceError
from cas_repo.maintenance import format_duration, fsck, parse_duration
from cas_repo.maintenance.common import maintenance_lock


@given(st.integers(0, 10**8))
def test_format_then_parse_is_the_identity(seconds):
    td = timedelta(seconds=seconds)
    assert parse_duration(format_duration(td)) == td


@pytest.mark.parametrize("text, seconds", [("0", 0), ("90s", 90), ("15m", 900), ("24h", 86400),
                                           ("30d", 30 * 86400), ("2w", 14 * 86400), ("1.5h", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "1y", "-1d", "h", "24 hours", "1e3s"])
def test_bad_durations_say_what_is_expected(text):
    with pytest.raises(ValueError, match="90s, 15m, 24h"):
        parse_duration(text)


def test_a_second_maintenance_command_waits_then_says_who_is_busy(store):
    held, release = threading.Event(), threading.Event()

    def hold():
        with maintenance_lock(store.catalog.path):
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(30)
        with pytest.raises(MaintenanceError, match="another maintenance command"), \
                maintenance_lock(store.catalog.path, timeout=0.2):
            pass
    finally:
        release.set()
        t.join(30)
    assert fsck(store).clean  # and once it is free, it runs
