"""PyTorch tensors as plain numpy arrays, so identical weights pickle to identical bytes.

torch pickles a tensor through ``torch.save`` of its storage, which embeds a
per-process key: the same weights give different bytes (and digests) in every process,
and loading them needs ``torch.storage._load_from_bytes``, i.e. ``torch.load``, which we
never allow. Here CPU tensors, Parameters and dtypes are reduced to arrays and names
that the functions below rebuild, after checking what the stored bytes hand them.

The pickler imports this module (and calls :func:`install`) only when the caller has
already imported torch; unpickling a stored torch model imports it through the
allowlisted rebuild functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import SerializationError
from .reducers import register_reducer

# dtypes numpy holds natively, by torch's name for them.
_NATIVE = {
    name: getattr(torch, name)
    for name in ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8",
                 "uint16", "uint32", "uint64", "bool", "complex64", "complex128")
}
# dtypes numpy lacks: stored as their bit pattern in an integer array of the same width.
_BITS = {
    name: (getattr(torch, name), getattr(torch, carrier))
    for name, carrier in (("bfloat16", "int16"), ("float8_e4m3fn", "uint8"),
                          ("float8_e5m2", "uint8"), ("float8_e4m3fnuz", "uint8"),
                          ("float8_e5m2fnuz", "uint8"))
    if hasattr(torch, name)
}
_NAME_OF = {dtype: name for name, dtype in _NATIVE.items()} | {d: n for n, (d, _) in _BITS.items()}
_NUMPY_OF = {name: torch.empty(0, dtype=dtype).numpy().dtype for name, dtype in _NATIVE.items()}


def _dtype_name(dtype: Any) -> str:
    name = _NAME_OF.get(dtype)
    if name is None:
        raise SerializationError(
            f"cannot store torch dtype {dtype}: supported are {sorted(_NAME_OF.values())}")
    return name


def _as_array(t: Any) -> tuple[np.ndarray, str]:
    """A C-contiguous CPU array holding ``t``'s values (or bits), and the dtype's name."""
    if t.device.type != "cpu":
        raise SerializationError(
            f"a tensor lives on {t.device}: move the model to the CPU (e.g. `model.to('cpu')`) "
            "before saving; cas-repo stores CPU tensors only")
    if t.layout != torch.strided or t.is_quantized or t.is_meta:
        raise SerializationError(f"cannot store a {t.layout} / quantized / meta tensor; "
                                 "convert it to a dense CPU tensor first")
    if vars(t):
        raise SerializationError(f"a tensor carries Python attributes {sorted(vars(t))}: "
                                 "cas-repo stores a tensor's values only")
    name = _dtype_name(t.dtype)
    t = t.detach().resolve_conj().resolve_neg().contiguous()
    if name in _BITS:
        t = t.view(_BITS[name][1])
    return t.numpy(), name


def _reduce_tensor(t: Any) -> tuple:
    array, name = _as_array(t)
    return _rebuild_tensor, (array, name, bool(t.requires_grad))


def _reduce_parameter(p: Any) -> tuple:
    if p._backward_hooks:
        raise SerializationError("a Parameter has backward hooks: remove them before saving")
    array, name = _as_array(p)
    return _rebuild_parameter, (array, name, bool(p.requires_grad))


def _reduce_dtype(dtype: Any) -> tuple:
    return _dtype, (_dtype_name(dtype),)


def _from_array(array: Any, name: Any) -> Any:
    if not isinstance(array, np.ndarray) or not isinstance(name, str):
        raise SerializationError("a stored tensor is malformed (expected an array and a dtype name)")
    if name in _NATIVE:
        if array.dtype != _NUMPY_OF[name]:
            raise SerializationError(f"a stored {name} tensor holds {array.dtype} values")
        return torch.from_numpy(array)
    if name in _BITS:
        dtype, carrier = _BITS[name]
        if array.dtype != _NUMPY_OF[_NAME_OF[carrier]]:
            raise SerializationError(f"a stored {name} tensor holds {array.dtype} values")
        return torch.from_numpy(array).view(dtype)
    raise SerializationError(f"a stored tensor names an unknown dtype {name!r:.40}")


def _rebuild_tensor(array: Any, name: Any, requires_grad: Any) -> Any:
    """Rebuild a tensor stored by :func:`_reduce_tensor` (shares the array's memory)."""
    t = _from_array(array, name)
    return t.requires_grad_(True) if requires_grad is True else t


def _rebuild_parameter(array: Any, name: Any, requires_grad: Any) -> Any:
    """Rebuild a ``torch.nn.Parameter`` stored by :func:`_reduce_parameter`."""
    return torch.nn.Parameter(_from_array(array, name), requires_grad=requires_grad is True)


def _dtype(name: Any) -> Any:
    """The torch dtype called ``name`` (only the names this module stores)."""
    if name in _NATIVE:
        return _NATIVE[name]
    if name in _BITS:
        return _BITS[name][0]
    raise SerializationError(f"a stored pickle names an unknown torch dtype {name!r:.40}")


def install() -> None:
    """Register the reducers with the pickler (idempotent)."""
    register_reducer("torch.nn.parameter.Parameter", _reduce_parameter)
    register_reducer("torch.dtype", _reduce_dtype)
    # Registered last: the pickler takes its presence to mean "installed".
    register_reducer("torch.Tensor", _reduce_tensor)
