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
# consults *before* find_class: a cached entry would bypass the allowlist. So every
# opcode is walked before the unpickler runs (check_opcodes).


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


# Each opcode's argument as pickletools describes it (the table genops walks by): a fixed
# length, a line (a pair of lines for GLOBAL and INST), or a length stored before it.
_PAIR = -100
_ARGS = {op.code.encode("latin-1")[0]: (0 if op.arg is None else _PAIR if op.arg.name == "stringnl_noescape_pair"
                                        else op.arg.n) for op in pickletools.opcodes}
_LENGTHS = {pickletools.TAKEN_FROM_ARGUMENT1: (1, False), pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
            pickletools.TAKEN_FROM_ARGUMENT4U: (4, False), pickletools.TAKEN_FROM_ARGUMENT8U: (8, False)}
_EXT = {0x82: 1, 0x83: 2, 0x84: 4}  # EXT1, EXT2, EXT4 and the size of their code
_STOP = ord(".")


def _ext_codes(data: bytes | bytearray) -> list[int]:
    """The extension codes ``data`` uses, walking opcodes as ``pickletools.genops`` does
    but skipping arguments instead of decoding them (a model's text is one large string).

    Raises:
        ValueError: an unknown opcode, a negative length, or a stream cut short.
    """
    pos, end, found = 0, len(data), []
    while pos < end:
        op = data[pos]
        pos += 1
        n = _ARGS.get(op)
        if n is None:
            raise ValueError(f"unknown opcode {op:#04x} at byte {pos - 1}")
        if op in _EXT:
            found.append(int.from_bytes(data[pos : pos + _EXT[op]], "little", signed=op == 0x84))
        if n >= 0:
            pos += n
        elif n in (pickletools.UP_TO_NEWLINE, _PAIR):
            for _ in range(2 if n == _PAIR else 1):
                nl = data.find(b"\n", pos)
                if nl < 0:
                    raise ValueError(f"no newline after the opcode at byte {pos - 1}")
                pos = nl + 1
        else:
            width, signed = _LENGTHS[n]
            if pos + width > end:
                break
            size = int.from_bytes(data[pos : pos + width], "little", signed=signed)
            if size < 0:
                raise ValueError(f"negative length {size} at byte {pos}")
            pos += width + size
        if pos > end:
            break
        if op == _STOP:
            return found
    raise ValueError("the stream ends before its STOP opcode")


def check_opcodes(stream: bytes | bytearray | memoryview) -> None:
    """Refuse extension opcodes before anything is executed.

    Raises:
        UnsafePickleError: the stream uses EXT1/EXT2/EXT4.
        SerializationError: the stream is not a well-formed pickle.
    """
    try:
        codes = _ext_codes(stream if isinstance(stream, (bytes, bytearray)) else bytes(stream))
    except ValueError as exc:
        raise SerializationError(f"the stored pickle stream is malformed: {exc}") from exc
    for code in codes:
        # Name what the code maps to in this process: that is what it would have run.
        # (copyreg's private table, so looked up defensively.)
        target = getattr(copyreg, "_inverted_registry", {}).get(code)
        if target:
            raise UnsafePickleError(".".join(target), f"reached through extension code {code}; "
                                    "EXT opcodes are refused")
        raise UnsafePickleError(f"extension code {code}", "EXT opcodes are refused")


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
