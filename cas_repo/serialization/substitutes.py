"""Stand-ins for classes whose pickled state is inert but whose own class is unsafe to rebuild.

The unpickler hands out the stand-in wherever a stored pickle names the original, and
the pickler writes the stand-in in place of the original, so stored bytes never name it.
"""

from __future__ import annotations

from typing import Any


class InertLightGBMPredictor:
    """Stands in for ``lightgbm.basic._InnerPredictor``.

    A Booster made by continued training (``lgb.train(..., init_model=...)``) keeps its
    init model's predictor. LightGBM pickles it without its C handle, so once loaded it
    can never predict; but its class frees ``self._handle`` in ``__del__`` when a flag
    says so, and both would come from the stored bytes: rebuilding the real class from an
    untrusted pickle could free an arbitrary pointer. The stand-in keeps nothing.
    """

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        """Drop the stored state: nothing in it is usable without the handle."""

    def __reduce__(self) -> tuple:
        return InertLightGBMPredictor, ()

    def __repr__(self) -> str:
        return "<InertLightGBMPredictor: the init model's predictor, not stored>"


def _inert_predictor(_obj: Any) -> tuple:
    return InertLightGBMPredictor, ()


# What a stored pickle may name -> what the unpickler gives instead.
SUBSTITUTES: dict[str, type] = {"lightgbm.basic._InnerPredictor": InertLightGBMPredictor}
# Types the pickler replaces, by qualified name, with the reducer that does it.
REPLACED = {"lightgbm.basic._InnerPredictor": _inert_predictor}
