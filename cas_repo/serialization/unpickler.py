"""The restricted unpickler: allowlisted globals only, no extension opcodes."""

from __future__ import annotations

import copyreg
import io
import pickle
import pickletools
from collections.abc import Sequence
from typing import Any

from ..errors import SerializationError, UnsafePickleError
from .allowlist import is_allowed
from .substitutes import SUBSTITUTES

# EXT1/2/4 resolve globals through copyreg's extension cache, which the C unpickler
# consults *before* find_class: a cached entry would bypass the allowlist.
_REFUSED_OPCODES = {"EXT1", "EXT2", "EXT4"}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if not isinstance(module, str) or not isinstance(name, str):
            raise UnsafePickleError(f"{module}.{name}")
        substitute = SUBSTITUTES.get(f"{module}.{name}")
        if substitute is not None:
            return substitute
        if not is_allowed(module, name):
            raise UnsafePickleError(f"{module}.{name}")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("persistent_load", "persistent ids are never used by cas-repo")


def check_opcodes(stream: bytes | bytearray | memoryview) -> None:
    """Refuse extension opcodes before anything is executed.

    Raises:
        UnsafePickleError: the stream uses EXT1/EXT2/EXT4.
        SerializationError: the stream is not a well-formed pickle.
    """
    try:
        # Through a file: genops takes bytes or bytearray only, and read a memoryview as a
        # file, failing on it as if the stream were malformed.
        for opcode, arg, _pos in pickletools.genops(io.BytesIO(stream)):
            if opcode.name in _REFUSED_OPCODES:
                # Name what the code maps to in this process: that is what it would have run.
                # (copyreg's private table, so looked up defensively.)
                target = getattr(copyreg, "_inverted_registry", {}).get(arg)
                if target:
                    raise UnsafePickleError(".".join(target), f"reached through extension code {arg}; "
                                            "EXT opcodes are refused")
                raise UnsafePickleError(f"extension code {arg}", "EXT opcodes are refused")
    except UnsafePickleError:
        raise
    except Exception as exc:  # genops raises ValueError and friends on malformed input
        raise SerializationError(f"the stored pickle stream is malformed: {exc}") from exc


def loads(stream: bytes | bytearray | memoryview, buffers: Sequence[Any] = ()) -> Any:
    """Rebuild an object from :func:`dumps` output, refusing anything not allowlisted.

    Raises:
        UnsafePickleError: a global outside the allowlist, or an EXT opcode.
        SerializationError: the stream is malformed or the rebuild failed.
    """
    check_opcodes(stream)
    try:
        return _RestrictedUnpickler(io.BytesIO(stream), buffers=buffers).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError, MemoryError, RecursionError) as exc:
        raise SerializationError(f"the stored model could not be rebuilt: {exc!r}") from exc
