"""The helper for model authors: what the platform hands a training entrypoint, read from its environment.

    from services.common.training_sdk import TrainingContext

    def train(ctx: TrainingContext) -> None:          # entrypoint `my_model.train:train`
        C = ctx.float_param("C", 1.0)
        data = ctx.read_dataset()                     # a DataFrame, or None when no dataset URI was given
        with mlflow.start_run():                      # resumes the run the platform created
            ...
            mlflow.sklearn.log_model(model, name="model", signature=..., input_example=...)
            mlflow.log_metric(ctx.gate_metric, score)
            champion = ctx.load_champion()            # the version this run may replace, or None
            if champion is not None:                  # scored on the same held-out rows
                mlflow.log_metric(ctx.champion_metric, score_of(champion.predict(x_test)))

A function entrypoint takes no argument or one (the `TrainingContext`); a command entrypoint calls `context()`
itself. The contract is described in docs/models.md. Only the standard library is imported at module level
(pandas, and boto3 for `s3://` datasets, when a dataset is read; MLflow when the champion is loaded).
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import os
import sys
import traceback
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.common import training_contract as tc

if TYPE_CHECKING:
    import pandas as pd

ParamValue = str | int | float | bool | None

# Exit code of `main` when the entrypoint itself cannot be found or called (the runner reports it).
ENTRYPOINT_NOT_CALLABLE = 2


class ContextError(RuntimeError):
    """The environment does not hold what the contract promises (the code is not run by the platform)."""


@dataclass(frozen=True)
class TrainingContext:
    """What the platform hands the training code for one run."""

    model_name: str
    tracking_uri: str
    run_id: str
    experiment_name: str
    gate_metric: str
    gate_direction: str
    output_dir: Path
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    dataset_uri: str | None = None
    champion_model_uri: str | None = None

    @property
    def champion_metric(self) -> str:
        """The metric under which to log the champion's score on this run's held-out data."""
        return tc.champion_metric(self.gate_metric)

    def load_champion(self) -> Any:
        """The champion (the version this run may replace) loaded with `mlflow.pyfunc.load_model`, or None when
        the alias has no holder yet."""
        if not self.champion_model_uri:
            return None
        import mlflow

        return mlflow.pyfunc.load_model(self.champion_model_uri)

    def param(self, name: str, default: ParamValue = None) -> ParamValue:
        """The param `name` of this run, or `default` when neither the catalog nor the run sets it."""
        return self.params.get(name, default)

    def float_param(self, name: str, default: float) -> float:
        """The param `name` as a number (an int is taken as a float); ValueError naming it otherwise."""
        value = self.params.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"param {name!r} must be a number; got {value!r}")
        return float(value)

    def int_param(self, name: str, default: int) -> int:
        """The param `name` as an integer; ValueError naming it otherwise."""
        value = self.params.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"param {name!r} must be an integer; got {value!r}")
        return value

    def read_dataset(self) -> pd.DataFrame | None:
        """The run's dataset as a DataFrame (a CSV file), or None when no dataset URI was given."""
        return read_csv(self.dataset_uri) if self.dataset_uri else None

    def features_and_target(
        self, target: str, default: Callable[[], pd.DataFrame] | None = None
    ) -> tuple[pd.DataFrame, pd.Series]:
        """The run's dataset (else `default()`, e.g. a bundled data set) split into the feature columns and the
        `target` column; ValueError naming the data and its columns when there is no such column."""
        frame = self.read_dataset()
        source = self.dataset_uri or "the default data"
        if frame is None:
            if default is None:
                raise ValueError("no dataset URI was given and the code has no default data")
            frame = default()
        if target not in frame.columns:
            raise ValueError(f"{source} has no {target!r} column (columns: {', '.join(map(str, frame.columns))})")
        return frame.drop(columns=[target]), frame[target]


def context(environ: Mapping[str, str] | None = None) -> TrainingContext:
    """The context of the running training process, from its environment (`os.environ` by default).

    Raises ContextError naming every missing or malformed variable."""
    env = os.environ if environ is None else environ
    missing = [
        var.name for var in tc.TRAINING_VARS if var not in tc.OPTIONAL_VARS and not (env.get(var.name) or "").strip()
    ]
    if missing:
        raise ContextError(
            f"not run by the platform's training runner: {', '.join(missing)} not set (see docs/models.md)"
        )
    raw_params = env[tc.PARAMS.name]
    try:
        params = json.loads(raw_params)
    except json.JSONDecodeError as exc:
        raise ContextError(f"{tc.PARAMS.name} is not valid JSON ({exc}): {raw_params[:200]!r}") from None
    if not isinstance(params, dict):
        raise ContextError(f"{tc.PARAMS.name} must be a JSON object; got {type(params).__name__}")
    direction = env[tc.GATE_DIRECTION.name]
    if direction not in ("max", "min"):
        raise ContextError(f"{tc.GATE_DIRECTION.name} must be max or min; got {direction!r}")
    return TrainingContext(
        model_name=env[tc.MODEL_NAME.name],
        tracking_uri=env[tc.TRACKING_URI.name],
        run_id=env[tc.RUN_ID.name],
        experiment_name=env[tc.EXPERIMENT_NAME.name],
        gate_metric=env[tc.GATE_METRIC.name],
        gate_direction=direction,
        output_dir=Path(env[tc.OUTPUT_DIR.name]),
        params=params,
        dataset_uri=(env.get(tc.DATASET_URI.name) or "").strip() or None,
        champion_model_uri=(env.get(tc.CHAMPION_MODEL_URI.name) or "").strip() or None,
    )


def read_csv(uri: str) -> pd.DataFrame:
    """A CSV file as a DataFrame, from a local path, a `file://` URI or an `s3://bucket/key` URI (read with
    boto3, which takes its credentials and endpoint from the usual `AWS_*` variables)."""
    import pandas as pd

    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = urllib.parse.unquote(parsed.path) if parsed.scheme else uri
        return pd.read_csv(path)
    if parsed.scheme == "s3":
        import boto3

        body = boto3.client("s3").get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"].read()
        return pd.read_csv(io.BytesIO(body))
    raise ValueError(f"unsupported dataset URI {uri!r}: use a path, file:// or s3://")


def resolve(entrypoint: str) -> Callable[..., Any]:
    """The function named by `package.module:function`."""
    module_name, sep, attr = entrypoint.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"entrypoint must be package.module:function; got {entrypoint!r}")
    module = importlib.import_module(module_name)
    function = getattr(module, attr, None)
    if function is None or not callable(function):
        raise ValueError(f"module {module_name!r} has no function {attr!r}")
    return function


def _takes_context(function: Callable[..., Any], entrypoint: str) -> bool:
    """Whether the entrypoint function takes the context (one argument) or nothing; TypeError otherwise."""
    parameters = list(inspect.signature(function).parameters.values())
    required = [p for p in parameters if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(required) > 1 or any(p.kind == p.KEYWORD_ONLY for p in required):
        raise TypeError(f"{entrypoint} must take no argument or one (the TrainingContext)")
    return bool(positional)


def call(entrypoint: str, ctx: TrainingContext | None = None) -> Any:
    """Call the entrypoint function with no argument, or with the context when it takes one."""
    function = resolve(entrypoint)
    if _takes_context(function, entrypoint):
        return function(ctx if ctx is not None else context())
    return function()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m services.common.training_sdk package.module:function`: what the runner executes.

    Exits with ENTRYPOINT_NOT_CALLABLE (the reason on the last line of stderr) when the function cannot be
    imported or called; an exception raised by the function itself propagates (exit code 1, traceback)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m services.common.training_sdk package.module:function", file=sys.stderr)
        return ENTRYPOINT_NOT_CALLABLE
    entrypoint = args[0]
    try:
        ctx = context()
        function = resolve(entrypoint)
        takes_context = _takes_context(function, entrypoint)
    except (ContextError, ValueError, TypeError, ImportError) as exc:
        if isinstance(exc, ImportError):
            traceback.print_exc()
        print(f"training entrypoint {entrypoint}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ENTRYPOINT_NOT_CALLABLE
    if takes_context:
        function(ctx)
    else:
        function()
    return 0


if __name__ == "__main__":
    sys.exit(main())
