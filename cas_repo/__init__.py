"""cas-repo: a content-addressed, versioned store for Qlib models.

    from cas_repo import ModelStore, CasModelRepository, ModelMetadata
    store = ModelStore("data/cas")          # sync core
    repo = CasModelRepository("data/cas")   # async IModelRepository
"""

from typing import Any

from .errors import (
    AccessRefusedError,
    AliasNotFoundError,
    AliasTargetError,
    CasRepoError,
    CatalogCorruptError,
    CatalogError,
    CatalogLockedError,
    CommitOutcomeUnknownError,
    IntegrityError,
    InvalidAliasError,
    InvalidFilterError,
    InvalidMetadataError,
    InvalidModelIdError,
    LogDamagedError,
    ModelDeletedError,
    ModelNotFoundError,
    OutputExistsError,
    SerializationError,
    StoreError,
    UnsafePickleError,
)
from .metadata import ModelMetadata
from .repository import ModelStore
from .serialization import allow_globals

__version__ = "0.1.0"

__all__ = [
    "AccessRefusedError",
    "AliasNotFoundError",
    "AliasTargetError",
    "CasModelRepository",
    "CasRepoError",
    "CatalogCorruptError",
    "CatalogError",
    "CatalogLockedError",
    "CommitOutcomeUnknownError",
    "IModelRepository",
    "IntegrityError",
    "InvalidAliasError",
    "InvalidFilterError",
    "InvalidMetadataError",
    "InvalidModelIdError",
    "LogDamagedError",
    "ModelDeletedError",
    "ModelMetadata",
    "ModelNotFoundError",
    "ModelStore",
    "OutputExistsError",
    "SerializationError",
    "StoreError",
    "UnsafePickleError",
    "allow_globals",
]


def __getattr__(name: str) -> Any:
    # The async facade and its port import asyncio (~35 ms): loaded on first use, so that
    # a CLI call or a process using the synchronous core does not pay for them.
    if name == "CasModelRepository":
        from .facade import CasModelRepository

        return CasModelRepository
    if name == "IModelRepository":
        from .ports import IModelRepository

        return IModelRepository
    raise AttributeError(f"module 'cas_repo' has no attribute {name!r}")
