"""Both ways of loading a native version (loader process, thread) give the same working model, and a
corrupt artifact is a LoadError with the reason in both."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from devstack.models import iris_rows
from devstack.stack import MlflowStack
from services.serving.loader import Loader, LoadError
from tests.services.serving.test_variants_reload import corrupt_artifact

pytestmark = [
    pytest.mark.servers,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:X does not have valid feature names"),
]


@pytest.mark.parametrize("use_process", [True, False], ids=["process", "thread"])
def test_native_load_paths(stack: MlflowStack, new_model: Callable[..., Any], use_process: bool) -> None:
    model = new_model(champion=1.0)
    broken = model.add(C=0.3)
    corrupt_artifact(stack, broken.source)
    loader = Loader(stack.tracking_uri, model.name, max_batch=10, use_process=use_process)

    async def run() -> tuple[Any, str]:
        loaded = await loader.load(model.versions[0].version)
        with pytest.raises(LoadError) as err:
            await loader.load(broken.version)
        return loaded, str(err.value)

    try:
        loaded, reason = asyncio.run(run())
    finally:
        loader.close()
    assert loaded.flavor == "sklearn" and loaded.workdir is None
    rows = iris_rows(3, offset=100)  # three virginica rows
    assert loaded.predict(loaded.validator.validate({"rows": rows})) == [2, 2, 2]
    assert f"version {broken.version}" in reason and "failed" in reason
