"""What every model the platform logs declares as its requirements (shared by the DAGs and devstack)."""

from __future__ import annotations


def pip_requirements() -> list[str]:
    """The running environment's versions of what an sklearn pyfunc model needs, pinned.

    Passing these to `log_model(pip_requirements=...)` skips MLflow's requirement-inference
    subprocess (8-11 s per model, ~0.75 s with them) and records exactly what was trained with."""
    import mlflow
    import numpy
    import pandas
    import sklearn

    return [
        f"mlflow=={mlflow.__version__}",
        f"scikit-learn=={sklearn.__version__}",
        f"numpy=={numpy.__version__}",
        f"pandas=={pandas.__version__}",
    ]
