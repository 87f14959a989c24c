"""The pickler's table of reducers: how objects of a given exact type are written.

Reducers exist for types whose own pickling is not deterministic across processes, or
whose class is unsafe to rebuild (:mod:`.substitutes`). Each maps a type to a function
returning a ``__reduce__`` tuple whose callable is an allowlisted global. The table is
keyed by qualified name, so neither torch nor lightgbm is imported here; it lives apart
from :mod:`.pickler` so that :mod:`.torch_support` registers into it without importing
the pickler that imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .substitutes import REPLACED

Reducer = Callable[[Any], Any]

_REDUCERS: dict[str, Reducer] = dict(REPLACED)
# Reducer (or None) by type, so each type's qualified name is formatted once.
_BY_TYPE: dict[type, Reducer | None] = {}


def register_reducer(qualified_type: str, reducer: Reducer) -> None:
    """Use ``reducer(obj)`` for objects whose exact type is ``module.QualName``."""
    _REDUCERS[qualified_type] = reducer
    _BY_TYPE.clear()


def is_registered(qualified_type: str) -> bool:
    """Whether objects of exactly ``module.QualName`` have a reducer."""
    return qualified_type in _REDUCERS


def reducer_for(t: type) -> Reducer | None:
    """The reducer for objects of exactly type ``t``, or None (pickle's own way)."""
    try:
        return _BY_TYPE[t]
    except KeyError:
        reducer = _BY_TYPE[t] = _REDUCERS.get(f"{t.__module__}.{t.__qualname__}")
        return reducer
