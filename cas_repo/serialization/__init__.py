"""Turning models into bytes and back, safely (pickle lives in this package only).

``dumps`` gives a main pickle stream (protocol 5) plus the large array buffers taken
out of band; ``loads`` rebuilds the model with a restricted unpickler whose allowlist
only code or the process environment can extend.
"""

from .allowlist import allow_globals, allowed_globals, is_allowed
from .pickler import SerializedModel, dumps
from .standard import standard_pickle, write_pickle_file
from .unpickler import loads

SERIALIZER = "pickle5-oob/1"

__all__ = [
    "SERIALIZER",
    "SerializedModel",
    "allow_globals",
    "allowed_globals",
    "dumps",
    "is_allowed",
    "loads",
    "standard_pickle",
    "write_pickle_file",
]
