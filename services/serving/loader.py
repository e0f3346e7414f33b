"""Downloading and loading model versions, away from the event loop.

Native sklearn versions are fetched and deserialized in a separate loader process (one per service
process, started with `spawn`, at a lower CPU priority: nice +10) when the container's memory limit
leaves room for it (`services.common.serving_rules.loader_process_fits`; no limit counts as room). The serving
process then only unpickles the ready estimator it gets back over the pipe (sub-millisecond for a linear model), so a
hot swap under load costs the event loop almost nothing: no GIL contention with a loading thread and
no competition for the CPU while requests are waiting. Only the files the native path needs are
fetched: MLmodel, the serialized estimator and the input example (one GET each, no listing).

Versions that cannot be served natively (another flavour, a non-numeric signature, custom code) are
downloaded whole and loaded through pyfunc in a worker thread of the serving process. Without room
for a loader process, or if it cannot be started or dies, native loading runs in a thread as well.

Every version is checked with a prediction on its own input example before it may serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import os
import pickle
import shutil
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from services.serving.schema import InputValidator, RequestError

log = logging.getLogger("mlops.serving.loader")

# sklearn warns on every call when a model fitted on a DataFrame gets a numpy matrix; the matrix
# columns are in the signature's order, which is the order the model was fitted with.
warnings.filterwarnings("ignore", message="X does not have valid feature names")

LOADER_NICE = 10


def trust_validated_inputs() -> None:
    """In the calling thread (the event loop's, where micro-batched native predictions run), scikit-learn
    skips the checks the service has already made: finiteness (the validator requires finite numbers before
    a matrix reaches a native model, `services.serving.schema`) and parameter validation (the parameters of a
    fitted estimator were validated when it was fitted). Loading, and pyfunc models, run in other threads with
    scikit-learn's defaults. Also `remember_dataframe_sniffing()`."""
    import sklearn

    sklearn.set_config(assume_finite=True, skip_parameter_validation=True)
    remember_dataframe_sniffing()


def remember_dataframe_sniffing() -> bool:
    """Make scikit-learn's dataframe detection of a numpy matrix a dictionary lookup (the whole process).

    Before every step of a `predict`, scikit-learn asks narwhals whether its input is a dataframe or a series
    (`narwhals.stable.v2.dependencies.is_into_dataframe` / `is_into_series`), and narwhals goes through every
    dataframe library it knows and its plugins, looking for protocol attributes with `inspect.getattr_static`,
    which walks the type's MRO and raises and catches an AttributeError each time (CPython 3.11 has no
    `_shadowed_dict` cache; 3.12 added one): ~25% of a 16-row `Pipeline.predict` here. For exactly
    `numpy.ndarray` and `None` the answers depend only on the type (neither has an instance `__dict__` or accepts
    new attributes, and the dataframe libraries and plugins narwhals sees are fixed once imported), so each is
    computed once, by narwhals, and remembered. Every other object goes through narwhals' own checks. Returns
    False (and changes nothing) when narwhals is not installed or has none of these functions any more."""
    try:
        import narwhals._utils as nw_utils
        import narwhals.stable.v2.dependencies as nw_dependencies
    except ImportError:
        return False
    import numpy as np

    found = False
    for module, name in (
        (nw_dependencies, "is_into_dataframe"),
        (nw_dependencies, "is_into_series"),
        (nw_utils, "_hasattr_static"),  # narwhals' other callers (the plugins' checks, conversions)
    ):
        original = getattr(module, name, None)
        if original is None:
            continue
        found = True
        if not getattr(original, "remembers", False):
            setattr(module, name, _remembered(original, (np.ndarray, type(None))))
    return found


def _remembered(original: Any, fixed: tuple[type, ...]) -> Any:
    """`original(obj, *args)`, computed once per (type, args) when `type(obj)` is one of `fixed`."""
    known: dict[tuple[Any, ...], Any] = {}

    @functools.wraps(original)
    def remembered(obj: Any, *args: Any) -> Any:
        kind = type(obj)
        if kind in fixed:
            key = (kind, *args)
            answer = known.get(key)
            if answer is None:
                answer = known[key] = original(obj, *args)
            return answer
        return original(obj, *args)

    remembered.remembers = True  # type: ignore[attr-defined]
    return remembered


_CGROUP_LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def memory_limit_bytes(files: tuple[str, ...] = _CGROUP_LIMIT_FILES) -> int | None:
    """The container's memory limit (cgroup v2 or v1), or None when there is none."""
    for name in files:
        try:
            raw = Path(name).read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 2**60:  # v1 reports "no limit" as a huge number
            return int(raw)
        return None
    return None


class LoadError(Exception):
    """A version could not be resolved, downloaded, loaded or failed its check prediction."""


# --- shared by both paths --------------------------------------------------------------------------
def to_list(output: Any) -> list[Any]:
    import numpy as np

    if isinstance(output, np.ndarray):
        return output.tolist()
    to_dict = getattr(output, "to_dict", None)
    if callable(to_dict) and hasattr(output, "columns"):
        return output.to_dict(orient="records")
    tolist = getattr(output, "tolist", None)
    if callable(tolist):
        return tolist()
    return list(output)


def input_example_rows(meta: Any, local: str) -> list[dict[str, Any]] | None:
    try:
        example = meta.load_input_example(local)
    except Exception:  # an unreadable example is not a reason to refuse the model
        log.warning("input example of the model could not be read", exc_info=True)
        return None
    if example is None or not hasattr(example, "to_dict"):
        return None
    rows: list[dict[str, Any]] = example.head(5).to_dict(orient="records")
    return [{str(k): (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in rows]


def check_prediction(predict: Any, validator: InputValidator, example: list[dict[str, Any]] | None) -> None:
    """Predict on the model's own input example; a model that cannot is refused."""
    if not example:
        return
    try:
        predict(validator.validate({"rows": example}))
    except RequestError as exc:
        raise LoadError(f"the model's own input example does not validate: {exc.message}") from exc
    except Exception as exc:
        raise LoadError(f"check prediction on the input example failed: {type(exc).__name__}: {exc}") from exc


def _download_uri(tracking_uri: str, model_name: str, version: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    return str(client.get_model_version_download_uri(model_name, version)).rstrip("/")


def _fetch_file(root: str, relative: str, workdir: str, tracking_uri: str) -> str:
    """One file of the model directory: a single GET where the repository allows it."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    target = Path(workdir) / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    repo = get_artifact_repository(root, tracking_uri=tracking_uri)
    download_file = getattr(repo, "_download_file", None)
    if callable(download_file):
        download_file(relative, str(target))
    else:  # pragma: no cover - every repository in MLflow 3.17 has it
        repo.download_artifacts(relative, dst_path=workdir)
    return str(target)


# --- native path (runs in the loader process) ------------------------------------------------------
def _init_loader_process() -> None:
    with contextlib.suppress(OSError):
        os.nice(LOADER_NICE)
    import mlflow.sklearn  # noqa: F401 - warm the import once, not at the first swap


def fetch_native(tracking_uri: str, model_name: str, version: str, max_batch: int) -> dict[str, Any]:
    """Fetch and deserialize a native sklearn version. Returns the pickled estimator with the signature
    and input example, or ``{"native": False}`` when the version needs pyfunc. Raises RuntimeError
    with the reason when the version cannot be served."""
    import mlflow.sklearn
    from mlflow.models import Model

    workdir = tempfile.mkdtemp(prefix=f"serving-load-v{version}-")
    try:
        root = _download_uri(tracking_uri, model_name, version)
        local = str(Path(_fetch_file(root, "MLmodel", workdir, tracking_uri)).parent)
        meta = Model.load(local)
        validator = InputValidator.from_signature(meta.signature, max_batch)
        conf = meta.flavors.get("sklearn") or {}
        if not conf.get("pickled_model") or conf.get("code") or not validator.numeric:
            return {"native": False}
        _fetch_file(root, str(conf["pickled_model"]), workdir, tracking_uri)
        example_file = (meta.saved_input_example_info or {}).get("artifact_path")
        if example_file:
            _fetch_file(root, str(example_file), workdir, tracking_uri)
        estimator = mlflow.sklearn.load_model(local)
        example = input_example_rows(meta, local)
        check_prediction(lambda m: estimator.predict(m), validator, example)
        return {
            "native": True,
            "estimator": pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL),
            "signature": meta.signature.to_dict() if meta.signature is not None else None,
            "example": example,
        }
    except LoadError as exc:
        raise RuntimeError(str(exc)) from None
    except Exception as exc:
        raise RuntimeError(f"loading version {version} failed: {type(exc).__name__}: {exc}") from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --- pyfunc path (runs in a thread of the serving process) ----------------------------------------
def load_pyfunc(tracking_uri: str, model_name: str, version: str, max_batch: int) -> tuple[Any, InputValidator, str]:
    """Download the whole version and load it with pyfunc. Returns (predict, validator, workdir);
    the directory must live as long as the model (pyfunc models may read files lazily)."""
    import mlflow
    from mlflow.models import Model

    workdir = tempfile.mkdtemp(prefix=f"serving-pyfunc-v{version}-")
    try:
        root = _download_uri(tracking_uri, model_name, version)
        local = str(mlflow.artifacts.download_artifacts(artifact_uri=root, dst_path=workdir, tracking_uri=tracking_uri))
        meta = Model.load(local)
        validator = InputValidator.from_signature(meta.signature, max_batch)
        model = mlflow.pyfunc.load_model(local)

        def predict(inputs: Any) -> list[Any]:
            if not hasattr(inputs, "columns"):  # numeric matrix from the validator
                import pandas as pd

                inputs = pd.DataFrame(inputs, columns=list(validator.names or ()))
            return to_list(model.predict(inputs))

        check_prediction(predict, validator, input_example_rows(meta, local))
        return predict, validator, workdir
    except LoadError:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    except Exception as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise LoadError(f"loading version {version} failed: {type(exc).__name__}: {exc}") from exc


class Loaded:
    """What a load produced: the predict callable, its validator, its flavour and (pyfunc) directory."""

    def __init__(
        self, predict: Any, validator: InputValidator, flavor: str, workdir: str | None, seconds: float
    ) -> None:
        self.predict = predict
        self.validator = validator
        self.flavor = flavor
        self.workdir = workdir
        self.seconds = seconds


class Loader:
    """Loads versions: natively in the loader process when possible, else with pyfunc in a thread."""

    def __init__(self, tracking_uri: str, model_name: str, max_batch: int, use_process: bool = True) -> None:
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.max_batch = max_batch
        self.use_process = use_process
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor | None:
        if not self.use_process:
            return None
        if self._pool is None:
            try:
                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_init_loader_process
                )
            except (OSError, ValueError) as exc:
                log.warning("no loader process (%s): loading in threads", exc)
                self.use_process = False
        return self._pool

    async def load(self, version: str) -> Loaded:
        started = time.perf_counter()
        native = await self._load_native(version)
        if native is not None:
            return Loaded(native[0], native[1], "sklearn", None, time.perf_counter() - started)
        predict, validator, workdir = await asyncio.to_thread(
            load_pyfunc, self.tracking_uri, self.model_name, version, self.max_batch
        )
        return Loaded(predict, validator, "pyfunc", workdir, time.perf_counter() - started)

    async def _load_native(self, version: str) -> tuple[Any, InputValidator] | None:
        args = (self.tracking_uri, self.model_name, version, self.max_batch)
        pool = self._executor()
        result: dict[str, Any] | None = None
        try:
            if pool is not None:
                result = await asyncio.get_running_loop().run_in_executor(pool, fetch_native, *args)
        except BrokenProcessPool:
            log.warning("the loader process died; loading version %s in a thread", version)
            self._pool = None
        except RuntimeError as exc:
            raise LoadError(str(exc)) from None
        if result is None:
            try:
                result = await asyncio.to_thread(fetch_native, *args)
            except RuntimeError as exc:
                raise LoadError(str(exc)) from None
        if not result["native"]:
            return None
        return await asyncio.to_thread(self._materialize, result)

    def _materialize(self, result: dict[str, Any]) -> tuple[Any, InputValidator]:
        from mlflow.models import ModelSignature

        # The bytes come from this service's own loader process, which deserialized the model with
        # MLflow's (skops) loader; they never come from outside.
        estimator = pickle.loads(result["estimator"])  # noqa: S301
        signature = ModelSignature.from_dict(result["signature"]) if result["signature"] else None
        validator = InputValidator.from_signature(signature, self.max_batch)

        def predict(matrix: Any) -> list[Any]:
            return to_list(estimator.predict(matrix))

        check_prediction(predict, validator, result["example"])
        return predict, validator

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
