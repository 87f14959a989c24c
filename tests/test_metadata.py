"""ModelMetadata: saved_version and saved_digest, set by a save; references to versions parsed one way."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas_repo.errors import CasRepoError, InvalidMetadataError
from cas_repo.metadata import format_ref, parse_ref, split_ref


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


MODEL_IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)


@given(MODEL_IDS, st.integers(min_value=1, max_value=10**9))
def test_a_version_reference_round_trips_and_reads_alike_both_ways(model_id, version):
    ref = format_ref(model_id, version)
    assert parse_ref(ref) == (model_id, version)
    assert split_ref(ref) == (model_id, version, None)


@pytest.mark.parametrize("ref", ["m", "m@prod", "m@0", "m@", "m@@3", "m@3@4", "@3", "m@-1", "m@3x", 3, None])
def test_parse_ref_takes_a_version_reference_only(ref):
    with pytest.raises(CasRepoError, match=r"version|model_id|reference"):
        parse_ref(ref)
