"""cas-repo: a content-addressed, versioned store for Qlib models.

    from cas_repo import ModelStore, CasModelRepository, ModelMetadata
    store = ModelStore("data/cas")          # sync core
    repo = CasModelRepository("data/cas")   # async IModelRepository
"""

from .errors import (
    AliasNotFoundError,
    AliasTargetError,
    CasRepoError,
    CatalogCorruptError,
    CatalogError,
    CatalogLockedError,
    IntegrityError,
    InvalidAliasError,
    InvalidMetadataError,
    InvalidModelIdError,
    ModelDeletedError,
    ModelNotFoundError,
    SerializationError,
    StoreError,
    UnsafePickleError,
)
from .facade import CasModelRepository
from .metadata import ModelMetadata
from .ports import IModelRepository
from .repository import ModelStore
from .serialization import allow_globals

__version__ = "0.1.0"

__all__ = [
    "AliasNotFoundError",
    "AliasTargetError",
    "CasModelRepository",
    "CasRepoError",
    "CatalogCorruptError",
    "CatalogError",
    "CatalogLockedError",
    "IModelRepository",
    "IntegrityError",
    "InvalidAliasError",
    "InvalidMetadataError",
    "InvalidModelIdError",
    "ModelDeletedError",
    "ModelMetadata",
    "ModelNotFoundError",
    "ModelStore",
    "SerializationError",
    "StoreError",
    "UnsafePickleError",
    "allow_globals",
]
