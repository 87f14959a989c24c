"""PyTorch models: identical weights give identical bytes, loads predict identically."""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cas_repo import UnsafePickleError, allow_globals
from cas_repo.errors import SerializationError
from cas_repo.qlib_support import synthetic as syn
from cas_repo.serialization import allowed_globals, dumps, loads

torch = pytest.importorskip(
    "torch", reason="torch is an optional extra (pip install -e '.[torch]'); torch tests need it")

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter trains both models with the same seed and prints their digests:
# ours (arrays) and plain pickle's (torch's storages, keyed per process).
_CHILD = """
import hashlib, pickle, warnings
warnings.simplefilter("ignore")
from cas_repo.content import to_content
from cas_repo.qlib_support import synthetic as syn
small = syn.make_dataset(n_instruments=20, n_days=120)
models = [syn.train_lstm(small, n_epochs=1), syn.train_dnn(syn.make_dataset(), max_steps=20)]
print("OURS", *(to_content(m).digest.hex for m in models))
print("PLAIN", *(hashlib.sha256(pickle.dumps(m, protocol=4)).hexdigest() for m in models))
"""


def _round_trip(obj):
    ser = dumps(obj)
    return loads(ser.stream, [bytearray(b) for b in ser.buffers])


@pytest.fixture(scope="module")
def dataset():
    # Big enough for DNNModelPytorch's IC metric, which qlib cannot compute on tiny days.
    return syn.make_dataset()


@pytest.fixture(scope="module")
def models(dataset):
    return {"LSTM": syn.train_lstm(dataset, n_epochs=1), "MLP": syn.train_dnn(dataset, max_steps=20)}


@pytest.mark.slow
def test_identical_weights_give_identical_digests_across_processes(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD], cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-3000:]
        outputs.append({line.split()[0]: line.split()[1:] for line in out.splitlines()
                        if line.startswith(("OURS", "PLAIN"))})
    a, b = outputs
    assert len(a["OURS"]) == 2 and a["OURS"] == b["OURS"]
    # Why the reducers exist: torch's own pickles key each storage by its address, so the
    # same weights pickle differently in every process (given address randomization).
    if _address_randomization():
        assert a["PLAIN"][0] != b["PLAIN"][0] and a["PLAIN"][1] != b["PLAIN"][1]


def _address_randomization() -> bool:
    try:
        return Path("/proc/sys/kernel/randomize_va_space").read_text().strip() != "0"
    except OSError:
        return False


def test_loaded_models_predict_identically(store, make_md, dataset, models):
    for model_type, model in models.items():
        store.save_model(model, make_md(model_type.lower(), model_type=model_type))
        loaded, md = store.load_model(model_type.lower())
        assert type(loaded) is type(model) and md.model_type == model_type
        net = model.lstm_model if model_type == "LSTM" else model.dnn_model
        got = (loaded.lstm_model if model_type == "LSTM" else loaded.dnn_model).state_dict()
        assert list(got) == list(net.state_dict())
        assert all(torch.equal(got[k], v) and got[k].dtype == v.dtype for k, v in net.state_dict().items())
        np.testing.assert_array_equal(syn.predict(loaded, dataset), syn.predict(model, dataset))


def test_parameters_stay_shared_with_optimizer_state(models):
    loaded = _round_trip(models["LSTM"])
    params = list(loaded.lstm_model.parameters())
    assert [id(p) for p in loaded.train_optimizer.param_groups[0]["params"]] == [id(p) for p in params]
    assert set(map(id, loaded.train_optimizer.state)) <= set(map(id, params))
    assert all(isinstance(p, torch.nn.Parameter) and p.requires_grad for p in params)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16,
                                   torch.int64, torch.int8, torch.uint8, torch.bool, torch.complex64])
def test_tensors_of_every_dtype_round_trip_bit_for_bit(dtype):
    base = torch.arange(-6, 30, dtype=torch.float64).reshape(4, 9)
    t = base.to(dtype)
    value = {"t": t, "strided": t.t(), "scalar": t[1, 2], "dtype": dtype,
             "big": torch.ones(40_000, dtype=dtype)}  # large enough to go out of band
    out = _round_trip(value)
    for key in ("t", "strided", "scalar", "big"):
        assert out[key].dtype == dtype and out[key].shape == value[key].shape
        assert torch.equal(out[key], value[key])
    assert out["dtype"] is dtype
    assert dumps(value).stream == dumps(copy.deepcopy(value)).stream


def test_requires_grad_and_devices_survive():
    p = torch.nn.Parameter(torch.randn(3, 2))
    frozen = torch.nn.Parameter(torch.randn(2), requires_grad=False)
    out = _round_trip({"p": p, "frozen": frozen, "grad": torch.ones(2, requires_grad=True),
                       "device": torch.device("cpu"), "size": torch.Size([2, 3])})
    assert out["p"].requires_grad and not out["frozen"].requires_grad
    assert out["grad"].requires_grad and out["grad"].is_leaf
    assert out["device"] == torch.device("cpu") and out["size"] == torch.Size([2, 3])


def test_tensors_that_cannot_be_stored_faithfully_are_refused_at_save():
    with pytest.raises(SerializationError, match="meta"):
        dumps({"w": torch.empty(3, device="meta")})
    with pytest.raises(SerializationError, match=r"sparse|layout"):
        dumps(torch.eye(3).to_sparse())
    tagged = torch.zeros(2)
    tagged.note = "x"
    with pytest.raises(SerializationError, match="attributes"):
        dumps(tagged)


class _Head(torch.nn.Module):
    """A user module class: not in the allowlist until the user allows it."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 1)


def test_a_module_class_outside_the_allowlist_is_refused_naming_it(store, make_md):
    store.save_model(_Head(), make_md("head", model_type="MLP"))
    name = f"{__name__}._Head"
    with pytest.raises(UnsafePickleError) as info:
        store.load_model("head")
    message = str(info.value)
    assert name in message and f"allow_globals({name!r})" in message
    assert "CAS_REPO_ALLOW_GLOBALS" in message
    allow_globals(name)
    loaded, _ = store.load_model("head")
    assert isinstance(loaded, _Head) and isinstance(loaded.fc, torch.nn.Linear)


def test_torch_own_pickles_are_refused_and_its_loaders_never_allowed():
    # A plain pickle of a tensor rebuilds through torch.load: it must not get through.
    with pytest.raises(UnsafePickleError, match=r"torch\._utils\._rebuild_tensor_v2"):
        loads(pickle.dumps(torch.zeros(3), protocol=4))
    allowed = allowed_globals()
    for name in ("torch.load", "torch.storage._load_from_bytes", "torch._utils._rebuild_tensor_v2",
                 "torch._utils._rebuild_parameter", "torch.serialization.load"):
        assert name not in allowed
    assert not any(n.endswith(".*") or n.count(".") < 1 for n in allowed)


def test_stored_arguments_are_checked_by_the_rebuilders():
    from cas_repo.serialization import torch_support as ts

    with pytest.raises(SerializationError, match="unknown dtype"):
        ts._rebuild_tensor(np.zeros(2, np.float32), "os.system", False)
    with pytest.raises(SerializationError, match="holds"):
        ts._rebuild_tensor(np.zeros(2, np.float64), "float32", False)
    with pytest.raises(SerializationError, match="malformed"):
        ts._rebuild_parameter([1.0], "float32", True)
    with pytest.raises(SerializationError):
        ts._dtype("__class__")
