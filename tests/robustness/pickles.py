"""A tiny pickle assembler: hostile streams written opcode by opcode (see ``pickletools``)."""

from __future__ import annotations

import struct
import types

PROTO = b"\x80\x05"
STOP = b"."
MARK, TUPLE, REDUCE, NONE, EMPTY_DICT = b"(", b"t", b"R", b"N", b"}"
MEMOIZE, POP, STACK_GLOBAL = b"\x94", b"0", b"\x93"


def program(body: bytes) -> bytes:
    return PROTO + body + STOP


def string(s: str) -> bytes:
    raw = s.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE


def const(v) -> bytes:
    """A constant: None, bool, int, str, bytes, or a tuple of those."""
    if v is None:
        return NONE
    if v is True or v is False:
        return b"\x88" if v else b"\x89"
    if isinstance(v, int):
        raw = v.to_bytes((v.bit_length() + 8) // 8 or 1, "little", signed=True)
        return b"\x8a" + bytes([len(raw)]) + raw  # LONG1
    if isinstance(v, str):
        return string(v)
    if isinstance(v, bytes):
        return b"B" + struct.pack("<I", len(v)) + v  # BINBYTES
    if isinstance(v, tuple):
        return MARK + b"".join(const(x) for x in v) + TUPLE
    raise TypeError(type(v))


def glob(module: str, name: str) -> bytes:
    """GLOBAL opcode (text form), what older pickles and hand-written exploits use."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def stack_glob(module: str, name: str) -> bytes:
    """STACK_GLOBAL (protocol 4+), what Python's own pickler writes."""
    return string(module) + string(name) + STACK_GLOBAL


def call(fn: bytes, *args: bytes) -> bytes:
    return fn + MARK + b"".join(args) + TUPLE + REDUCE


def code_args(source: str) -> tuple:
    """The positional arguments of ``types.CodeType`` (3.11+) rebuilding ``compile(source)``."""
    c = compile(source, "<pickle>", "exec")
    assert not any(isinstance(k, types.CodeType) for k in c.co_consts)
    return (c.co_argcount, c.co_posonlyargcount, c.co_kwonlyargcount, c.co_nlocals, c.co_stacksize,
            c.co_flags, c.co_code, c.co_consts, c.co_names, c.co_varnames, c.co_filename, c.co_name,
            c.co_qualname, c.co_firstlineno, c.co_linetable, c.co_exceptiontable, c.co_freevars,
            c.co_cellvars)
