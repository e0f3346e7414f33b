"""Entrypoint `broken_model.train:train`: `mode` crash (raises), nothing (logs neither a model nor the gate metric,
only another metric) or no_metric (logs a valid model but not the gate metric)."""

from __future__ import annotations

from typing import Any


def train(ctx: Any) -> None:
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature
    from mlflow.pyfunc import PythonModel

    class Double(PythonModel):
        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            return model_input["x"] * 2

    mode = ctx.param("mode")
    if mode == "crash":
        print("loading the data", flush=True)
        raise RuntimeError("boom: the data is bad")
    with mlflow.start_run():
        mlflow.log_metric("other", 1.0)
        if mode == "nothing":
            return
        example = pd.DataFrame({"x": [1.0, 2.0]})
        mlflow.pyfunc.log_model(
            name="model",
            python_model=Double(),
            signature=infer_signature(example, example["x"] * 2),
            input_example=example,
            pip_requirements=["mlflow"],
        )
