"""Turns at creating log commits on a folder: one process of the machine at a time, and
never more than a bounded wait (the turn is a hint; create decides)."""

from __future__ import annotations

import os
import threading
import time

from cas_repo.objects import turn as turn_mod
from cas_repo.objects.keys import log_key
from cas_repo.objects.local import LocalBackend
from cas_repo.objects.turn import CommitTurns


def _turns(folder):
    return CommitTurns(lambda: os.open(folder, os.O_RDONLY | os.O_DIRECTORY))


def test_two_openers_of_one_folder_take_turns(tmp_path):
    a, b = _turns(tmp_path), _turns(tmp_path)
    inside, order = threading.Event(), []

    def second():
        with b.turn() as got:
            order.append(("b", got))

    with a.turn() as got:
        order.append(("a", got))
        t = threading.Thread(target=second)
        t.start()
        inside.wait(0.2)
        assert order == [("a", True)]  # b waits for a's turn to end
    t.join(5)
    assert order == [("a", True), ("b", True)]
    a.close()
    b.close()


def test_a_turn_held_too_long_is_given_up_after_a_bounded_wait(tmp_path, monkeypatch):
    monkeypatch.setattr(turn_mod, "TURN_WAIT", 0.2)
    a, b = _turns(tmp_path), _turns(tmp_path)
    with a.turn():
        t = time.monotonic()
        with b.turn() as got:
            assert got is False
        assert time.monotonic() - t < 2
    with b.turn() as got:  # the abandoned waiter handed the turn on
        assert got is True
    a.close()
    b.close()


def test_a_folder_that_cannot_be_opened_means_no_turn_not_an_error(tmp_path):
    def refuse():
        raise OSError("refused")

    turns = CommitTurns(refuse)
    with turns.turn() as got:
        assert got is False


def test_the_folder_backend_commits_within_its_turn(tmp_path):
    backend = LocalBackend(tmp_path)
    with backend.commit_turn() as got:
        assert got is True
        assert backend.create(log_key(1), b"x") is True
    backend.close()
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == [log_key(1)]  # the turn adds no file to the store
