"""Pickling with protocol 5: large buffers out of band, tensors as plain arrays."""

from __future__ import annotations

import io
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import SerializationError
from .substitutes import REPLACED

PROTOCOL = 5
# Buffers smaller than this stay inside the stream: a separate chunk stream per tiny
# array would cost more index entries than it could ever dedup.
OUT_OF_BAND_MIN = 64 << 10


@dataclass(frozen=True, slots=True)
class SerializedModel:
    """A pickle stream and its out-of-band buffers (views, not copies)."""

    stream: bytes
    buffers: tuple[memoryview, ...]

    @property
    def size(self) -> int:
        return len(self.stream) + sum(b.nbytes for b in self.buffers)


# Reducers for types whose own pickling is not deterministic across processes, or whose
# class is unsafe to rebuild (substitutes.py). Each maps a type to a function returning a
# ``__reduce__`` tuple whose callable is an allowlisted global. Keyed by qualified name,
# so neither torch nor lightgbm is imported here.
_REDUCERS: dict[str, Callable[[Any], Any]] = dict(REPLACED)
# Reducer (or None) by type, so each type's qualified name is formatted once.
_BY_TYPE: dict[type, Callable[[Any], Any] | None] = {}


def register_reducer(qualified_type: str, reducer: Callable[[Any], Any]) -> None:
    """Use ``reducer(obj)`` for objects whose exact type is ``module.QualName``."""
    _REDUCERS[qualified_type] = reducer
    _BY_TYPE.clear()


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        t = type(obj)
        try:
            reducer = _BY_TYPE[t]
        except KeyError:
            reducer = _BY_TYPE[t] = _REDUCERS.get(f"{t.__module__}.{t.__qualname__}")
        if reducer is None:
            return NotImplemented
        return reducer(obj)


def dumps(model: Any) -> SerializedModel:
    """Serialize ``model``; contiguous buffers ≥ 64 KiB go out of band, zero-copy.

    Raises:
        SerializationError: the object cannot be pickled (names the reason).
    """
    _install_optional_reducers()
    buffers: list[memoryview] = []

    def keep(buf: pickle.PickleBuffer) -> bool:
        view = buf.raw()
        if view.nbytes < OUT_OF_BAND_MIN:
            return True  # true means: serialize in band
        buffers.append(view)
        return False

    out = io.BytesIO()
    try:
        _Pickler(out, protocol=PROTOCOL, buffer_callback=keep).dump(model)
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
        raise SerializationError(
            f"cannot serialize {type(model).__name__}: {exc}. Models must be picklable "
            "(no open files, locks, lambdas or live connections in their attributes)"
        ) from exc
    return SerializedModel(out.getvalue(), tuple(buffers))


def _install_optional_reducers() -> None:
    # Only when the caller already imported torch: importing it here would cost seconds.
    if "torch" in sys.modules and "torch.Tensor" not in _REDUCERS:
        from . import torch_support

        torch_support.install()
