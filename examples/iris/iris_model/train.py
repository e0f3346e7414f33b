"""Iris classifier: a scikit-learn pipeline (StandardScaler + LogisticRegression), logged with MLflow's sklearn
flavour. Entrypoint `iris_model.train:train`; gate metric `test_accuracy` (higher is better).

Data: the dataset URI of the run (a CSV with the four feature columns and a `target` column), or else
scikit-learn's bundled iris data (no network). Params: `C` (inverse regularisation, > 0), `max_iter` (>= 1).
The held-out split is fixed (SPLIT_SEED, TEST_SIZE), so every version is scored on the same rows; the champion
(when the platform names one) is scored on them too and logged as `champion.test_accuracy`.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.common.training_sdk import TrainingContext

log = logging.getLogger(__name__)

METRIC = "test_accuracy"
TARGET = "target"
SPLIT_SEED = 0
TEST_SIZE = 0.3
DEFAULT_C = 1.0
DEFAULT_MAX_ITER = 200


def hyperparameters(ctx: TrainingContext) -> dict[str, float | int]:
    c = ctx.float_param("C", DEFAULT_C)
    max_iter = ctx.int_param("max_iter", DEFAULT_MAX_ITER)
    if c <= 0:
        raise ValueError(f"param C must be > 0, got {c}")
    if max_iter < 1:
        raise ValueError(f"param max_iter must be >= 1, got {max_iter}")
    return {"C": c, "max_iter": max_iter}


def train(ctx: TrainingContext) -> None:
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from services.common.models import pip_requirements

    hyper = hyperparameters(ctx)
    features, target = ctx.features_and_target(TARGET, default=lambda: load_iris(as_frame=True).frame)
    x_train, x_test, y_train, y_test = train_test_split(
        features, target, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=target
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(C=hyper["C"], max_iter=hyper["max_iter"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a small max_iter is a legitimate choice
        model.fit(x_train, y_train)
    predictions = model.predict(x_test)

    with mlflow.start_run():  # resumes the run the platform created (MLFLOW_RUN_ID)
        # The platform logged the catalog's params already; log what it did not (logging a param twice with
        # another value is an error in MLflow).
        mlflow.log_params({k: v for k, v in hyper.items() if k not in ctx.params})
        mlflow.log_params({"split_seed": SPLIT_SEED, "test_size": TEST_SIZE, "train_rows": len(x_train)})
        if ctx.dataset_uri:
            dataset = from_pandas(x_train.assign(**{TARGET: y_train}), source=ctx.dataset_uri, targets=TARGET)
            mlflow.log_input(dataset, context="training")
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x_train, model.predict(x_train)),
            input_example=x_train.head(3),
            pip_requirements=pip_requirements(),
        )
        metrics = {
            METRIC: float(accuracy_score(y_test, predictions)),
            "test_f1_macro": float(f1_score(y_test, predictions, average="macro")),
            "train_accuracy": float(model.score(x_train, y_train)),
        }
        mlflow.log_metrics(metrics, model_id=info.model_id)  # on the run and on the logged model
        champion = ctx.load_champion()  # the version this run may replace: scored on the same held-out rows
        if champion is not None:
            champion_score = float(accuracy_score(y_test, champion.predict(x_test)))
            mlflow.log_metric(ctx.champion_metric, champion_score)  # on the run only: it is not this model's
            log.info("champion %s: %s = %s", ctx.champion_model_uri, METRIC, champion_score)
    log.info("logged %s: %s", info.model_uri, metrics)
