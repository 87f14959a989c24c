"""Ports: the seed design's IModelRepository, unchanged (five async methods), and ReadView."""

from __future__ import annotations

import abc
from typing import Any, Protocol, runtime_checkable

from .metadata import ModelMetadata


class IModelRepository(abc.ABC):
    """A repository of trained models and their metadata."""

    @abc.abstractmethod
    async def save_model(self, model: Any, metadata: ModelMetadata) -> str:
        """Save ``model`` with ``metadata``; returns the model_id."""

    @abc.abstractmethod
    async def load_model(self, model_id: str) -> tuple[Any, ModelMetadata]:
        """The model and its metadata; a missing or deleted model raises FileNotFoundError."""

    @abc.abstractmethod
    async def get_model_metadata(self, model_id: str) -> ModelMetadata:
        """The metadata of a model."""

    @abc.abstractmethod
    async def list_models(self, experiment_name: str | None = None,
                          model_type: str | None = None) -> list[ModelMetadata]:
        """Metadata of the stored models, newest first."""

    @abc.abstractmethod
    async def delete_model(self, model_id: str) -> None:
        """Delete a model."""


@runtime_checkable
class ReadView(Protocol):
    """What a store answers about its models, now (``ModelStore``) or as of a past time
    (``ModelStore.as_of(t)``, a ``StoreAsOf``): the CLI's ``--as-of`` and the web view read
    through this, whichever they hold."""

    def list_models(self, experiment_name: str | None = None, model_type: str | None = None,
                    include_deleted: bool = False) -> list[ModelMetadata]: ...

    def get_model_metadata(self, model_id: str, version: int | None = None) -> ModelMetadata: ...

    def load_model(self, model_id: str, version: int | None = None) -> tuple[Any, ModelMetadata]: ...

    def aliases(self, model_id: str) -> dict[str, int]: ...
