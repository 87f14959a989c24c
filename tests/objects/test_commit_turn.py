"""Turns at creating log commits on a folder: one process of the machine at a time, and
never more than a bounded wait (the turn is a hint; create decides)."""

from __future__ import annotations

import threading
import time

from cas_repo.objects import turn as turn_mod
from cas_repo.objects.keys import log_key
from cas_repo.objects.local import LocalBackend
from cas_repo.objects.turn import TURN_FILE, CommitTurns


def test_two_openers_of_one_folder_take_turns(tmp_path):
    a, b = CommitTurns(tmp_path), CommitTurns(tmp_path)
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
    a, b = CommitTurns(tmp_path), CommitTurns(tmp_path)
    with a.turn():
        t = time.monotonic()
        with b.turn() as got:
            assert got is False
        assert time.monotonic() - t < 2
    with b.turn() as got:  # the abandoned waiter handed the turn on
        assert got is True
    a.close()
    b.close()


def test_a_symlink_at_the_turn_file_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    (tmp_path / TURN_FILE).symlink_to(target)
    turns = CommitTurns(tmp_path)
    with turns.turn() as got:
        assert got is False
    assert target.read_text() == "keep"


def test_the_folder_backend_commits_within_its_turn(tmp_path):
    backend = LocalBackend(tmp_path)
    with backend.commit_turn() as got:
        assert got is True
        assert backend.create(log_key(1), b"x") is True
    backend.close()
