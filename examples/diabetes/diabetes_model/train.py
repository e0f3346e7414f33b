"""Diabetes progression: a regression on scikit-learn's bundled diabetes data set, served as an MLflow pyfunc
`PythonModel` (diabetes_model.ridge) wrapping ridge regression solved in closed form with numpy.
Entrypoint `diabetes_model.train:train`; gate metric `test_rmse` (lower is better).

Data: the dataset URI of the run (a CSV with the ten feature columns and a `target` column), or else the
bundled data (no network). Param: `alpha` (L2 penalty, >= 0). The held-out split is fixed; the champion (when the
platform names one) is scored on it too and logged as `champion.test_rmse`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.common.training_sdk import TrainingContext

log = logging.getLogger(__name__)

METRIC = "test_rmse"
TARGET = "target"
SPLIT_SEED = 0
TEST_SIZE = 0.25
DEFAULT_ALPHA = 0.1


def requirements() -> list[str]:
    """What loading the model needs, pinned at the versions it was trained with."""
    import cloudpickle
    import mlflow
    import numpy
    import pandas

    return [
        f"mlflow=={mlflow.__version__}",
        f"numpy=={numpy.__version__}",
        f"pandas=={pandas.__version__}",
        f"cloudpickle=={cloudpickle.__version__}",
    ]


def train(ctx: TrainingContext) -> None:
    import mlflow
    import numpy as np
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.models import infer_signature
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    from diabetes_model.ridge import RidgeModel, fit_ridge

    alpha = ctx.float_param("alpha", DEFAULT_ALPHA)
    if alpha < 0:
        raise ValueError(f"param alpha must be >= 0, got {alpha}")
    # the bundled frame: ten scaled features and `target`
    features, target = ctx.features_and_target(TARGET, default=lambda: load_diabetes(as_frame=True).frame)
    features, target = features.astype(float), target.astype(float)
    x_train, x_test, y_train, y_test = train_test_split(features, target, test_size=TEST_SIZE, random_state=SPLIT_SEED)
    coef, intercept = fit_ridge(x_train.to_numpy(), y_train.to_numpy(), alpha)
    model = RidgeModel(list(features.columns), coef, intercept)
    errors = model.predict(None, x_test) - y_test.to_numpy()
    residual = y_test.to_numpy() - y_test.to_numpy().mean()
    metrics = {
        METRIC: rmse(model.predict(None, x_test), y_test.to_numpy()),
        "test_mae": float(np.mean(np.abs(errors))),
        "test_r2": float(1 - np.sum(errors**2) / np.sum(residual**2)),
    }

    with mlflow.start_run():  # resumes the run the platform created (MLFLOW_RUN_ID)
        if "alpha" not in ctx.params:  # the platform logged the catalog's params already
            mlflow.log_param("alpha", alpha)
        mlflow.log_params({"split_seed": SPLIT_SEED, "test_size": TEST_SIZE, "train_rows": len(x_train)})
        if ctx.dataset_uri:
            dataset = from_pandas(x_train.assign(**{TARGET: y_train}), source=ctx.dataset_uri, targets=TARGET)
            mlflow.log_input(dataset, context="training")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=model,
            code_paths=[str(Path(__file__).resolve().parent)],  # ships diabetes_model.ridge with the model
            signature=infer_signature(x_train, model.predict(None, x_train.head(5))),
            input_example=x_train.head(3),
            pip_requirements=requirements(),
        )
        mlflow.log_metrics(metrics, model_id=info.model_id)  # on the run and on the logged model
        champion = ctx.load_champion()  # the version this run may replace: scored on the same held-out rows
        if champion is not None:
            champion_rmse = rmse(np.asarray(champion.predict(x_test), dtype=float), y_test.to_numpy())
            mlflow.log_metric(ctx.champion_metric, champion_rmse)  # on the run only: it is not this model's
            log.info("champion %s: %s = %s", ctx.champion_model_uri, METRIC, champion_rmse)
    log.info("logged %s: %s", info.model_uri, metrics)


def rmse(predicted: Any, actual: Any) -> float:
    import numpy as np

    return float(np.sqrt(np.mean((np.asarray(predicted, dtype=float) - np.asarray(actual, dtype=float)) ** 2)))
