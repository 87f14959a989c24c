"""A model as a standard pickle file: what tools expecting a ``model.pkl`` read.

The store's own format (protocol 5 with buffers out of band, tensors as plain arrays,
stand-ins for unsafe classes) serves dedup and safe loading; a file handed to other tools
must be one plain pickle stream that ``pickle.load`` (or Qlib's ``R.load_object``) reads
without cas-repo installed. So a model is loaded (verified) and pickled again here.
"""

from __future__ import annotations

import io
import os
import pickle
import secrets
from pathlib import Path
from typing import Any

from ..errors import OutputExistsError, OutputFileError, SerializationError
from .substitutes import InertLightGBMPredictor

# What Qlib's Recorder writes (`R.save_objects`); every Python 3 reads it.
PROTOCOL = 4


class _StandardPickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is InertLightGBMPredictor:
            # A continued model's init predictor, never stored (see substitutes): written
            # as None, what a Booster trained from scratch holds, so the file names no
            # cas-repo class.
            return type(None), ()
        return NotImplemented


def standard_pickle(model: Any) -> bytes:
    """``model`` as one protocol-4 pickle stream, every buffer in band.

    Raises:
        SerializationError: the model cannot be pickled.
    """
    out = io.BytesIO()
    try:
        _StandardPickler(out, protocol=PROTOCOL).dump(model)
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
        raise SerializationError(f"cannot pickle {type(model).__name__}: {exc}") from exc
    return out.getvalue()


def write_pickle_file(model: Any, path: str | os.PathLike[str], *, overwrite: bool = False) -> int:
    """Write ``model`` to ``path`` as a standard pickle; returns the bytes written.

    The bytes go to a temp file beside ``path``, are fsynced, then take its name in one
    step, so a failure at any point leaves no partial file. Without ``overwrite`` the name
    is taken with ``link(2)``, which refuses an existing file even one created meanwhile.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is false.
        OutputFileError: the file cannot be written (folder missing, permissions, disk full).
        SerializationError: the model cannot be pickled.
    """
    target = Path(path)
    data = standard_pickle(model)
    if not overwrite and target.exists():
        raise OutputExistsError(str(target))
    temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        # 0o666 less the umask: the permissions any new file of the user's gets.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if overwrite:
                os.replace(temp, target)
            else:
                _link_new(temp, target)
        finally:
            temp.unlink(missing_ok=True)
    except FileExistsError as exc:
        raise OutputExistsError(str(target)) from exc
    except OSError as exc:
        raise OutputFileError(f"cannot write {target}: {exc.strerror or exc}; nothing was written") from exc
    return len(data)


def _link_new(temp: Path, target: Path) -> None:
    """Give ``temp``'s file the name ``target``; FileExistsError if that name is taken."""
    try:
        os.link(temp, target)
    except FileExistsError:
        raise
    except OSError:
        # A filesystem without hard links: check, then rename (a small race, no partial file).
        if target.exists():
            raise FileExistsError(str(target)) from None
        os.replace(temp, target)
