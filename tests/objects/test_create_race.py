"""Processes racing to append to one log by create-only writes: every position gets exactly
one winner. On a local folder and on SeaweedFS — not on moto, whose conditional PUT is not
atomic and so proves nothing here. Workers are spawned, never forked: obstore hangs in a
child forked after its parent made a request.

Two ways to race: log writers (after a loss, skip past the newest commit seen), and writers
in lockstep (all try each position at the same moment). SeaweedFS makes a create that
arrives while another create of the key is in flight wait for it, in steps of one second,
before refusing it; so its log writers soon fall into single file behind one winner, and
lockstep is what keeps them colliding on every position.
"""

from __future__ import annotations

import pytest

from cas_repo.objects import LocalBackend
from cas_repo.objects.keys import log_key, parse_log_key
from cas_repo.objects.s3 import S3Backend

from ..s3_server import fresh_url
from ..spawned import run_together

WRITERS = 6
POSITIONS = {"log": 40, "lockstep": 6}


def _payload(writer: int, position: int) -> bytes:
    return f"writer {writer} commits position {position}; ".encode() * 16


def _append(target: str, options: dict | None, how: str, writer: int, start, results) -> None:
    """Create the next position; after a loss, a log writer skips past the newest commit seen,
    a writer in lockstep waits for the others and tries the next one.

    Puts ``(writer, positions won, creates lost, error or None)`` on ``results``.
    """
    won, lost = [], 0
    try:
        backend = LocalBackend(target) if options is None else S3Backend.from_url(target, **options)
        start.wait()
        position = 1
        while position <= POSITIONS[how]:
            if how == "lockstep":
                start.wait()  # every writer at this position at once
            if backend.create(log_key(position), _payload(writer, position)):
                won.append(position)
            else:
                lost += 1
                if how == "log":
                    newer = [parse_log_key(i.key) for i in backend.list("log/", start_after=log_key(position))]
                    position = newer[-1] if newer else position
            position += 1
    except BaseException as exc:
        results.put((writer, won, lost, f"{type(exc).__name__}: {exc}"))
        raise
    results.put((writer, won, lost, None))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["log", "lockstep"])
@pytest.mark.parametrize("where", ["local", "seaweedfs"])
def test_writers_in_several_processes_get_one_winner_per_position(where, how, tmp_path, request):
    if where == "local":
        target, options = str(tmp_path / "store"), None
        reader = LocalBackend(target)
    else:
        seaweed = request.getfixturevalue("seaweed")
        target, options = fresh_url(), seaweed.options()
        reader = S3Backend.from_url(target, **options)
    reports = run_together(_append, [(target, options, how, w) for w in range(WRITERS)], timeout=120,
                           what="a writer")
    assert [error for *_, error in reports if error] == []
    wins = {writer: won for writer, won, _, _ in reports}
    claimed = sorted(pos for won in wins.values() for pos in won)
    assert claimed == list(range(1, POSITIONS[how] + 1))  # each position won once, none skipped
    for writer, won in wins.items():
        for position in won:
            assert reader.get(log_key(position)) == _payload(writer, position)
