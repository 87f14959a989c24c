"""ModelMetadata's saved_version and saved_digest: set by a save, refused before one."""

from __future__ import annotations

import pytest

from cas_repo.errors import InvalidMetadataError


def test_unsaved_metadata_has_no_version_or_digest(make_md):
    md = make_md("m1")
    with pytest.raises(InvalidMetadataError, match="has no version: save it first"):
        md.saved_version()
    with pytest.raises(InvalidMetadataError, match="has no digest: save it first"):
        md.saved_digest()


def test_a_save_and_a_read_fill_both(store, make_md):
    md = make_md("m1")
    store.save_model({"w": 1}, md)
    assert md.saved_version() == 1 and len(md.saved_digest()) == 64
    read = store.get_model_metadata("m1")
    assert (read.saved_version(), read.saved_digest()) == (1, md.digest)
