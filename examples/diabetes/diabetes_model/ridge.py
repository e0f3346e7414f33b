"""The served model: ridge regression as an MLflow pyfunc `PythonModel`, computed in closed form with numpy.

This module ships inside the logged model (`code_paths`), so it imports only numpy, pandas and MLflow: whatever
loads the model (the serving service) needs neither the platform nor this repository.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Coefficients and intercept minimising ||y - x w - b||^2 + alpha ||w||^2 (the intercept unpenalised)."""
    x_mean, y_mean = x.mean(axis=0), float(y.mean())
    centred = x - x_mean
    coef = np.linalg.solve(centred.T @ centred + alpha * np.eye(x.shape[1]), centred.T @ (y - y_mean))
    return coef, y_mean - float(x_mean @ coef)


class RidgeModel(PythonModel):
    """Predicts `x @ coef + intercept` from the named feature columns of a DataFrame."""

    def __init__(self, columns: list[str], coef: np.ndarray, intercept: float) -> None:
        self.columns = list(columns)
        self.coef = np.asarray(coef, dtype=float)
        self.intercept = float(intercept)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        return np.asarray(model_input[self.columns], dtype=float) @ self.coef + self.intercept
