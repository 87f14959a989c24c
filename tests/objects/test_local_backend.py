"""The local folder backend: the shared contract plus what only a filesystem has."""

from __future__ import annotations

import os
import stat

import pytest

from cas_repo.digest import hash_bytes
from cas_repo.errors import StoreError
from cas_repo.objects import LocalBackend
from cas_repo.objects.keys import pack_key

from .contract import BackendContract


class TestLocalBackend(BackendContract):
    @pytest.fixture
    def backend(self, tmp_path):
        return LocalBackend(tmp_path / "objects")


def test_published_files_are_read_only(tmp_path):
    b = LocalBackend(tmp_path)
    key = pack_key(hash_bytes(b"data"))
    b.put(key, [b"data"])
    mode = os.stat(tmp_path / key).st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def test_symlinked_shard_directory_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "objects"
    b = LocalBackend(root)
    key = pack_key(hash_bytes(b"data"))
    shard = root / os.path.dirname(key)
    shard.parent.mkdir(parents=True)
    os.symlink(outside, shard)
    with pytest.raises(StoreError, match="symlink"):
        b.put(key, [b"data"])
    assert list(outside.iterdir()) == []


def test_symlink_at_object_path_is_not_followed(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not read")
    root = tmp_path / "objects"
    b = LocalBackend(root)
    key = pack_key(hash_bytes(b"data"))
    (root / key).parent.mkdir(parents=True)
    os.symlink(secret, root / key)
    with pytest.raises(StoreError, match="symlink"):
        b.read(key)
    with pytest.raises(StoreError, match="symlink"):
        b.put(key, [b"data"])
    assert secret.read_bytes() == b"do not read"


def test_failed_write_leaves_no_temp_file(tmp_path, monkeypatch):
    b = LocalBackend(tmp_path)
    key = pack_key(hash_bytes(b"data"))

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(StoreError, match="disk is full"):
        b.put(key, [b"data"])
    monkeypatch.undo()
    assert list(b.list_incomplete()) == []
    assert not b.exists(key)
    assert b.put(key, [b"data"]) is True


def test_read_into_many_small_buffers_spans_several_preadv_calls(tmp_path):
    b = LocalBackend(tmp_path)
    data = os.urandom(30_000)
    key = pack_key(hash_bytes(data))
    b.put(key, [data])
    targets = [bytearray(10) for _ in range(3000)]  # more buffers than one preadv takes
    assert b.read_ranges_into(key, [(0, [memoryview(t) for t in targets])]) == [30_000]
    assert b"".join(targets) == data


@pytest.mark.parametrize("direct_io", [True, False])
def test_large_blob_from_many_parts_round_trips_with_its_exact_size(tmp_path, direct_io):
    from cas_repo.objects.local import DIRECT_MIN

    data = os.urandom(DIRECT_MIN + 12_345)  # not a whole number of 4 KiB blocks
    parts = [data[:7], memoryview(data)[7 : 9 << 20], memoryview(data)[9 << 20 :]]
    b = LocalBackend(tmp_path, direct_io=direct_io)
    key = pack_key(hash_bytes(data))
    assert b.put(key, parts) is True
    assert b.stat(key).size == len(data)
    assert b.read(key) == data
    assert not os.stat(tmp_path / key).st_mode & stat.S_IWUSR


def test_large_blob_falls_back_to_the_cache_when_direct_writes_are_refused(tmp_path, monkeypatch):
    import errno

    from cas_repo.objects import local

    real_write = os.write
    refused = []

    def write(fd, data):
        if local.fcntl.fcntl(fd, local.fcntl.F_GETFL) & local._O_DIRECT:
            refused.append(len(data))
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(local.os, "write", write)
    data = os.urandom(local.DIRECT_MIN + 1)
    b = LocalBackend(tmp_path)
    key = pack_key(hash_bytes(data))
    assert b.put(key, [data]) is True
    assert refused and b.read(key) == data
    assert list(b.list_incomplete()) == []


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs a tmpfs at /dev/shm")
def test_large_blob_on_a_filesystem_without_o_direct():
    import shutil
    import tempfile

    from cas_repo.objects.local import DIRECT_MIN

    root = tempfile.mkdtemp(dir="/dev/shm")
    try:
        data = os.urandom(DIRECT_MIN + 3)
        b = LocalBackend(root)
        key = pack_key(hash_bytes(data))
        assert b.put(key, [data]) is True
        assert b.read(key) == data
    finally:
        shutil.rmtree(root)


def test_an_s3_option_on_a_folder_store_says_which_options_apply(tmp_path):
    # It reached LocalBackend as a keyword: a bare TypeError, outside CasRepoError.
    from cas_repo import ModelStore

    with pytest.raises(StoreError, match=r"unknown option\(s\) \['region'\] for the folder store .*"
                                         r"known: \['direct_io', 'fsync'\]"):
        ModelStore(tmp_path / "cas", backend_options={"region": "eu-west-1"})
    with ModelStore(tmp_path / "cas", backend_options={"fsync": False}) as store:
        assert store.list_models() == []
