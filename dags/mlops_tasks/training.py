"""Training and evaluation on scikit-learn's bundled iris data set (no network at run time)."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.common.models import pip_requirements

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

METRIC = "test_accuracy"
SPLIT_SEED = 0
TEST_SIZE = 0.3


@dataclass(frozen=True)
class Hyperparameters:
    C: float = 1.0
    max_iter: int = 200

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Hyperparameters:
        c = float(params.get("C", cls.C))
        max_iter = int(params.get("max_iter", cls.max_iter))
        if c <= 0:
            raise ValueError(f"param C must be > 0, got {c}")
        if max_iter < 1:
            raise ValueError(f"param max_iter must be >= 1, got {max_iter}")
        return cls(C=c, max_iter=max_iter)


def load_split() -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """The fixed train/test split: every candidate and the current alias holder are scored on the same
    held-out rows, so their metrics are comparable."""
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    features, target = load_iris(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(
        features, target, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=target
    )
    return x_train, x_test, y_train, y_test


def train_and_log(
    *, tracking_uri: str, experiment: str, hyper: Hyperparameters, tags: dict[str, str]
) -> dict[str, str]:
    """Fit the pipeline, log it (signature, input example, explicit pip requirements) in a new run.

    Returns the run id and the logged model's URI.
    """
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    x_train, _, y_train, _ = load_split()
    model = make_pipeline(StandardScaler(), LogisticRegression(C=hyper.C, max_iter=hyper.max_iter))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # small max_iter is a legitimate choice
        model.fit(x_train, y_train)
    with mlflow.start_run(tags=tags) as run:
        mlflow.log_params({"C": hyper.C, "max_iter": hyper.max_iter, "split_seed": SPLIT_SEED, "test_size": TEST_SIZE})
        mlflow.log_metric("train_accuracy", float(model.score(x_train, y_train)))
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x_train, model.predict(x_train)),
            input_example=x_train.head(3),
            pip_requirements=pip_requirements(),
        )
    log.info("logged model %s in run %s", info.model_uri, run.info.run_id)
    return {"run_id": run.info.run_id, "model_uri": info.model_uri}


def score(model_uri: str) -> dict[str, float]:
    """Load a model through pyfunc (as serving does) and score it on the held-out split."""
    import mlflow
    from sklearn.metrics import accuracy_score, f1_score

    _, x_test, _, y_test = load_split()
    predictions = mlflow.pyfunc.load_model(model_uri).predict(x_test)
    return {
        METRIC: float(accuracy_score(y_test, predictions)),
        "test_f1_macro": float(f1_score(y_test, predictions, average="macro")),
    }


def sample_rows(n: int = 3) -> list[dict[str, float]]:
    """Held-out rows to send to the serving service when verifying it."""
    _, x_test, _, _ = load_split()
    return [{str(k): float(v) for k, v in row.items()} for row in x_test.head(n).to_dict(orient="records")]
