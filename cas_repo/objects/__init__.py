"""The immutable object store: packs of chunks named by their BLAKE3 digests.

Layers, lowest first: ``backend`` (a handful of primitives over one kind of storage),
``keys`` (the only place a digest becomes a key), ``pack`` (the pack format, pure),
``store`` (writes packs, reads and verifies entries).
"""

from ..location import CHUNK, MANIFEST, RECORD, Location
from .backend import ObjectBackend, ObjectInfo
from .local import LocalBackend
from .store import ObjectStore, open_backend

__all__ = [
    "CHUNK",
    "MANIFEST",
    "RECORD",
    "LocalBackend",
    "Location",
    "ObjectBackend",
    "ObjectInfo",
    "ObjectStore",
    "open_backend",
]
