"""Temp files of local writes: who made them, when they are leftovers, and a write whose
temp file vanishes before it is published writes it again."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from cas_repo import faults
from cas_repo.digest import hash_bytes
from cas_repo.errors import StoreError
from cas_repo.objects import LocalBackend
from cas_repo.objects.keys import pack_key
from cas_repo.objects.temps import IN_USE_FLOOR, origin, owner, temp_name

KEY = "log/00000000000000000001"


def dead_pid() -> int:
    """The pid of a process of this machine that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    return int(done.stdout)


def plant(backend: LocalBackend, name: str, minutes_old: float = 0) -> str:
    """A temp file ``name`` in a pack folder, last written ``minutes_old`` ago; its key."""
    folder = backend.root / "packs" / "blake3" / "ab"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"half a pack")
    t = time.time() - minutes_old * 60
    os.utime(folder / name, (t, t))
    return f"packs/blake3/ab/{name}"


def listed(backend: LocalBackend) -> list[str]:
    return sorted(i.key for i in backend.list_incomplete())


@pytest.fixture
def backend(tmp_path):
    return LocalBackend(tmp_path / "objects", fsync=False)


@pytest.fixture
def needs_origin():
    if origin() is None:
        pytest.skip("no /proc here: temp files carry no origin and wait for the floor alone")


def test_a_temp_name_says_which_process_of_which_boot_made_it(needs_origin):
    assert owner(temp_name()) == (origin(), os.getpid())
    assert temp_name() != temp_name()
    assert owner(".tmp-9-dead") is None and owner(".tmp-overwrite") is None  # older or foreign names


def test_a_live_writers_fresh_temp_file_is_no_leftover_until_the_floor(backend):
    key = plant(backend, temp_name())
    assert listed(backend) == []
    plant(backend, key.rsplit("/", 1)[1], minutes_old=IN_USE_FLOOR.total_seconds() / 60 + 1)
    assert listed(backend) == [key]


def test_a_dead_writers_temp_file_is_a_leftover_at_once(backend, needs_origin):
    key = plant(backend, f".tmp-{origin()}-{dead_pid()}-0123456789ab")
    [info] = backend.list_incomplete()
    assert info.key == key and backend.remove_incomplete(info)
    assert listed(backend) == [] and not (backend.root / key).exists()


def test_a_temp_file_of_another_machine_or_an_older_name_waits_for_the_floor(backend, needs_origin):
    other = plant(backend, f".tmp-000000000000-{dead_pid()}-0123456789ab", minutes_old=10)
    old_style = plant(backend, f".tmp-{dead_pid()}-0123456789ab", minutes_old=10)
    assert listed(backend) == []
    for key in (other, old_style):
        plant(backend, key.rsplit("/", 1)[1], minutes_old=16)
    assert listed(backend) == sorted([other, old_style])


def test_a_temp_file_written_to_after_it_was_listed_is_kept(backend):
    key = plant(backend, temp_name(), minutes_old=60)
    [info] = backend.list_incomplete()
    os.utime(backend.root / key)  # its writer wrote again (it was only stalled)
    assert backend.remove_incomplete(info) is False and (backend.root / key).exists()


@pytest.fixture
def vanishing(monkeypatch):
    """Delete the temp files of a write at ``point`` (a cleanup racing the write), ``times`` times."""

    def arm(backend: LocalBackend, point: str, times: int) -> list[str]:
        gone: list[str] = []

        def hook(at: str) -> None:
            if at == point and len(gone) < times:
                for p in backend.root.rglob(".tmp-*"):
                    p.unlink()
                    gone.append(p.name)

        monkeypatch.setattr(faults, "ARMED", (point, 1))
        monkeypatch.setattr(faults, "crash_point", hook)
        return gone

    return arm


def test_a_commit_whose_temp_file_vanishes_before_its_link_is_written_again(backend, vanishing):
    gone = vanishing(backend, "before-link", times=1)
    assert backend.create(KEY, b"commit 1") is True
    assert len(gone) == 1 and backend.get(KEY) == b"commit 1"
    assert list(backend.root.rglob(".tmp-*")) == []


def test_a_pack_whose_temp_file_vanishes_before_its_rename_is_written_again(backend, vanishing):
    key = pack_key(hash_bytes(b"pack bytes"))
    gone = vanishing(backend, "after-fsync", times=1)
    assert backend.put(key, [b"pack ", b"bytes"]) is True
    assert len(gone) == 1 and backend.read(key) == b"pack bytes"


def test_a_temp_file_that_vanishes_twice_fails_the_write_saying_why(backend, vanishing):
    vanishing(backend, "before-link", times=2)
    with pytest.raises(StoreError, match="deleted twice") as failed:
        backend.create(KEY, b"commit 1")
    assert "nothing was recorded" in str(failed.value) and backend.get(KEY) is None
