"""Versions the native path cannot take (here: a pyfunc model with a string column) are served through
pyfunc, with the same validation: wrong types are 4xx naming the field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.models import pip_requirements
from devstack.stack import MlflowStack

pytestmark = [pytest.mark.servers, pytest.mark.slow]

MODEL_CODE = """
import mlflow
import pandas as pd


class Scorer(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None):
        return (model_input["name"].str.len() + model_input["x"]).tolist()


mlflow.models.set_model(Scorer())
"""


def register_pyfunc(stack: MlflowStack, name: str, code_dir: Path) -> str:
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    code = code_dir / "scorer.py"
    code.write_text(MODEL_CODE)
    example = pd.DataFrame({"name": ["ab", "abcd"], "x": [1.0, 0.5]})
    mlflow.set_tracking_uri(stack.tracking_uri)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            input_example=example,
            signature=infer_signature(example, [3.0, 4.5]),
            pip_requirements=pip_requirements(),
            registered_model_name=name,
        )
    mlflow.MlflowClient(stack.tracking_uri).set_registered_model_alias(name, "champion", info.registered_model_version)
    return str(info.registered_model_version)


def test_pyfunc_model_is_served_and_validated(
    stack: MlflowStack, new_model: Callable[..., Any], start_service: Callable[..., Any], tmp_path: Path
) -> None:
    model = new_model()
    version = register_pyfunc(stack, model.name, tmp_path)
    svc = start_service(model)
    with httpx.Client(timeout=30) as client:
        described = client.get(f"{svc.base_url}/models").json()["variants"][0]
        assert (described["flavor"], described["version"]) == ("pyfunc", version)
        ok = client.post(f"{svc.base_url}/predict", json={"rows": [{"name": "abc", "x": 2.0}, {"name": "", "x": 1}]})
        assert ok.status_code == 200, ok.text
        assert ok.json()["predictions"] == [5.0, 1.0]
        for row, field in (
            ({"name": 3, "x": 1.0}, "rows[0].name"),
            ({"name": "a"}, "rows[0].x"),
            ({"name": "a", "x": "1"}, "rows[0].x"),
            ({"name": "a", "x": 1.0, "y": 2}, "rows[0].y"),
        ):
            bad = client.post(f"{svc.base_url}/predict", json={"rows": [row]})
            assert bad.status_code == 422 and bad.json()["field"] == field, bad.text
