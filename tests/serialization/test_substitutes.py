"""Continued-training LightGBM models: the init model's predictor is never rebuilt."""

from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest

from cas_repo.content import to_content
from cas_repo.qlib_support import synthetic as syn
from cas_repo.serialization import dumps, loads
from cas_repo.serialization.substitutes import InertLightGBMPredictor


@pytest.fixture(scope="module")
def dataset():
    return syn.make_dataset(n_instruments=20, n_days=100)


@pytest.fixture(scope="module")
def child(dataset):
    return syn.continue_training(syn.train_lgbm(dataset, num_boost_round=20), dataset, 5)


def test_continued_model_round_trips_through_the_store(store, make_md, dataset, child):
    assert type(child.model._Booster__init_predictor).__name__ == "_InnerPredictor"
    ser = dumps(child)
    assert b"_InnerPredictor" not in ser.stream
    store.save_model(child, make_md("child"))
    loaded, md = store.load_model("child")
    np.testing.assert_array_equal(syn.predict(loaded, dataset), syn.predict(child, dataset))
    assert isinstance(loaded.model._Booster__init_predictor, InertLightGBMPredictor)
    # The stand-in pickles like the original did: a loaded model stores the same bytes.
    assert to_content(loaded).digest.hex == md.digest


def test_qlib_written_pickles_get_the_stand_in(dataset, child):
    loaded = loads(pickle.dumps(child, protocol=4))  # as qlib's Recorder writes it
    assert isinstance(loaded.model._Booster__init_predictor, InertLightGBMPredictor)
    np.testing.assert_array_equal(syn.predict(loaded, dataset), syn.predict(child, dataset))


def test_a_crafted_predictor_state_is_dropped():
    # lightgbm's class would free this "handle" when collected; the stand-in keeps nothing.
    def text(s: str) -> bytes:
        return b"X" + struct.pack("<I", len(s)) + s.encode()

    crafted = (b"\x80\x02clightgbm.basic\n_InnerPredictor\n)\x81}(" + text("_handle") + b"M\x10'"
               + text("_InnerPredictor__is_manage_handle") + b"\x88ub.")
    obj = loads(crafted)
    assert isinstance(obj, InertLightGBMPredictor) and not hasattr(obj, "__dict__")
    assert loads(dumps(obj).stream).__class__ is InertLightGBMPredictor
