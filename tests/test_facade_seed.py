"""The seed design's three unit tests, against the async CasModelRepository."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from cas_repo import CasModelRepository, IModelRepository, ModelMetadata


@pytest.fixture
def temp_repo(tmp_path):
    repo = CasModelRepository(tmp_path / "cas")
    yield repo
    repo.close()


def test_facade_implements_the_port(temp_repo):
    assert isinstance(temp_repo, IModelRepository)


@pytest.mark.asyncio
async def test_save_and_load_model(temp_repo):
    mock_model = {"type": "LGBM", "params": {"n_estimators": 100}}
    metadata = ModelMetadata(
        model_id="test_001",
        experiment_name="test_exp",
        model_type="LGBM",
        hyperparameters={"n_estimators": 100},
        metrics={"IC": 0.05},
        created_at=datetime.now(),
    )
    model_id = await temp_repo.save_model(mock_model, metadata)
    assert model_id == "test_001"
    loaded_model, loaded_metadata = await temp_repo.load_model(model_id)
    assert loaded_model == mock_model
    assert loaded_metadata.model_type == "LGBM"


@pytest.mark.asyncio
async def test_list_models(temp_repo):
    for i in range(3):
        metadata = ModelMetadata(
            model_id=f"model_{i}",
            experiment_name="test_exp",
            model_type="LGBM",
            hyperparameters={},
            metrics={},
            created_at=datetime.now(),
        )
        await temp_repo.save_model({}, metadata)
    models = await temp_repo.list_models()
    assert len(models) == 3


@pytest.mark.asyncio
async def test_delete_model(temp_repo):
    metadata = ModelMetadata(
        model_id="to_delete",
        experiment_name="test_exp",
        model_type="LGBM",
        hyperparameters={},
        metrics={},
        created_at=datetime.now(),
    )
    await temp_repo.save_model({}, metadata)
    await temp_repo.delete_model("to_delete")
    with pytest.raises(FileNotFoundError):
        await temp_repo.load_model("to_delete")


@pytest.mark.asyncio
async def test_seed_metadata_with_tags_none_still_works(temp_repo):
    md = ModelMetadata("m", "e", "LGBM", {}, {}, datetime.now(), None, None)
    await temp_repo.save_model([1], md)
    assert (await temp_repo.get_model_metadata("m")).tags == {}


@pytest.mark.asyncio
async def test_concurrent_saves_and_batch_load(temp_repo):
    async def save(i):
        md = ModelMetadata(f"m{i % 3}", "e", "LGBM", {}, {"IC": i / 100}, datetime.now())
        return await temp_repo.save_model({"i": i}, md)

    await asyncio.gather(*(save(i) for i in range(12)))
    versions = {m: [h.version for h in await temp_repo.history(m)] for m in ("m0", "m1", "m2")}
    assert versions == {m: [1, 2, 3, 4] for m in versions}
    loaded = await temp_repo.load_models(["m2", "m0"])
    assert [md.model_id for _, md in loaded] == ["m2", "m0"]
    assert [md.version for _, md in loaded] == [4, 4]
    new = await temp_repo.rollback("m1", 2)
    assert new == 5
    await temp_repo.delete_model("m1")
    await temp_repo.undelete_model("m1")
    assert (await temp_repo.load_model("m1"))[1].rollback_of == 2
