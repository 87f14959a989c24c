"""Pickling with protocol 5: large buffers out of band, tensors as plain arrays."""

from __future__ import annotations

import io
import pickle
import sys
from dataclasses import dataclass
from typing import Any

from ..errors import SerializationError
from .reducers import is_registered, reducer_for
from .reducers import register_reducer as register_reducer  # its former home: callers may import it here

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


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        reducer = reducer_for(type(obj))
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
    if "torch" in sys.modules and not is_registered("torch.Tensor"):
        from . import torch_support

        torch_support.install()
