"""The model authors' SDK: `context()` reads exactly the training contract's environment (the dataset and the champion
optional) and names every missing or malformed variable, typed params refuse the wrong type naming the param,
datasets are read from paths and file:// URIs (other schemes refused), and entrypoint functions are called with no
argument or the context, an uncallable one being reported with exit code 2 and its reason."""

from __future__ import annotations

import json
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from services.common import training_contract as tc
from services.common import training_sdk as sdk

ENV = {
    tc.TRACKING_URI.name: "http://127.0.0.1:5000",
    tc.RUN_ID.name: "abc123",
    tc.EXPERIMENT_NAME.name: "mlops/iris",
    tc.MODEL_NAME.name: "iris",
    tc.PARAMS.name: json.dumps({"C": 2, "solver": "lbfgs", "warm": True}),
    tc.GATE_METRIC.name: "test_accuracy",
    tc.GATE_DIRECTION.name: "max",
    tc.OUTPUT_DIR.name: "/tmp/out",
}


def test_context_reads_the_contract() -> None:
    ctx = sdk.context(ENV)
    assert (ctx.model_name, ctx.run_id, ctx.experiment_name, ctx.tracking_uri) == (
        "iris",
        "abc123",
        "mlops/iris",
        "http://127.0.0.1:5000",
    )
    assert (ctx.gate_metric, ctx.gate_direction, ctx.output_dir) == ("test_accuracy", "max", Path("/tmp/out"))
    assert ctx.params == {"C": 2, "solver": "lbfgs", "warm": True}
    assert ctx.dataset_uri is None and ctx.read_dataset() is None
    assert sdk.context({**ENV, tc.DATASET_URI.name: " s3://b/k.csv "}).dataset_uri == "s3://b/k.csv"
    assert sdk.context({**ENV, tc.DATASET_URI.name: ""}).dataset_uri is None


def test_the_champion_is_optional_and_logged_under_the_gate_metric() -> None:
    ctx = sdk.context(ENV)
    assert ctx.champion_model_uri is None and ctx.load_champion() is None  # no holder yet: nothing to compare
    assert ctx.champion_metric == tc.champion_metric("test_accuracy") == "champion.test_accuracy"
    with_champion = sdk.context({**ENV, tc.CHAMPION_MODEL_URI.name: " models:/iris/3 "})
    assert with_champion.champion_model_uri == "models:/iris/3"


def test_context_names_every_missing_variable() -> None:
    env = {k: v for k, v in ENV.items() if k not in (tc.RUN_ID.name, tc.GATE_METRIC.name)}
    env[tc.MODEL_NAME.name] = "  "
    with pytest.raises(sdk.ContextError) as info:
        sdk.context(env)
    message = str(info.value)
    for name in (tc.RUN_ID.name, tc.GATE_METRIC.name, tc.MODEL_NAME.name):
        assert name in message
    assert tc.DATASET_URI.name not in message and tc.CHAMPION_MODEL_URI.name not in message  # optional


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        (tc.PARAMS.name, "{C: 1}", f"{tc.PARAMS.name} is not valid JSON"),
        (tc.PARAMS.name, "[1, 2]", f"{tc.PARAMS.name} must be a JSON object; got list"),
        (tc.GATE_DIRECTION.name, "up", f"{tc.GATE_DIRECTION.name} must be max or min; got 'up'"),
    ],
)
def test_context_refuses_malformed_variables(var: str, value: str, expected: str) -> None:
    with pytest.raises(sdk.ContextError) as info:
        sdk.context({**ENV, var: value})
    assert expected in str(info.value)


def test_typed_params() -> None:
    ctx = sdk.context(ENV)
    assert ctx.float_param("C", 1.0) == 2.0 and isinstance(ctx.float_param("C", 1.0), float)
    assert ctx.float_param("missing", 0.5) == 0.5
    assert ctx.int_param("max_iter", 100) == 100
    assert ctx.param("solver") == "lbfgs" and ctx.param("missing", "x") == "x"
    with pytest.raises(ValueError, match="param 'solver' must be a number; got 'lbfgs'"):
        ctx.float_param("solver", 1.0)
    with pytest.raises(ValueError, match="param 'warm' must be an integer; got True"):
        ctx.int_param("warm", 1)
    with pytest.raises(ValueError, match="param 'warm' must be a number"):
        ctx.float_param("warm", 1.0)


def test_read_csv_from_a_path_and_a_file_uri(tmp_path: Path) -> None:
    folder = tmp_path / "with space"
    folder.mkdir()
    frame = pd.DataFrame({"x": [1.0, 2.0], "target": [0, 1]})
    frame.to_csv(folder / "d.csv", index=False)
    pd.testing.assert_frame_equal(sdk.read_csv(str(folder / "d.csv")), frame)
    uri = (folder / "d.csv").as_uri()
    assert "%20" in uri
    pd.testing.assert_frame_equal(sdk.context({**ENV, tc.DATASET_URI.name: uri}).read_dataset(), frame)
    with pytest.raises(ValueError, match=re.escape("unsupported dataset URI 'gs://b/d.csv'")):
        sdk.read_csv("gs://b/d.csv")


def test_features_and_target(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0], "y": [3.0, 4.0], "target": [0, 1]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    with_data = sdk.context({**ENV, tc.DATASET_URI.name: (tmp_path / "d.csv").as_uri()})
    features, target = with_data.features_and_target("target", default=lambda: frame.head(0))
    assert list(features.columns) == ["x", "y"] and list(target) == [0, 1]  # the dataset wins over the default
    features, target = sdk.context(ENV).features_and_target("target", default=lambda: frame.head(1))
    assert len(features) == 1 and list(target) == [0]
    with pytest.raises(ValueError, match=r"d\.csv has no 'label' column \(columns: x, y, target\)"):
        with_data.features_and_target("label")
    with pytest.raises(ValueError, match="no dataset URI was given and the code has no default data"):
        sdk.context(ENV).features_and_target("target")


@pytest.fixture
def entrypoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package `sdk_probe` on sys.path whose functions record how they were called in calls.json."""
    package = tmp_path / "sdk_probe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "fns.py").write_text(
        textwrap.dedent(
            f"""
            import json

            OUT = {str(tmp_path / "calls.json")!r}

            def _record(value):
                with open(OUT, "w") as f:
                    json.dump(value, f)

            def no_arg():
                _record("no_arg")

            def with_ctx(ctx):
                _record(["with_ctx", ctx.run_id])

            def optional_ctx(ctx=None):
                _record(["optional_ctx", ctx.run_id])

            def two_args(a, b):
                pass

            def keyword_only(*, ctx):
                pass

            NOT_A_FUNCTION = 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    yield tmp_path / "calls.json"
    for module in [m for m in sys.modules if m.split(".")[0] == "sdk_probe"]:
        del sys.modules[module]  # the next test's package lives in another folder


@pytest.mark.parametrize(
    ("function", "recorded"),
    [("no_arg", "no_arg"), ("with_ctx", ["with_ctx", "abc123"]), ("optional_ctx", ["optional_ctx", "abc123"])],
)
def test_main_calls_the_function_with_nothing_or_the_context(
    entrypoints: Path, function: str, recorded: object
) -> None:
    assert sdk.main([f"sdk_probe.fns:{function}"]) == 0
    assert json.loads(entrypoints.read_text()) == recorded


@pytest.mark.parametrize(
    ("entrypoint", "reason"),
    [
        ("sdk_probe.fns:two_args", "TypeError: sdk_probe.fns:two_args must take no argument or one"),
        ("sdk_probe.fns:keyword_only", "TypeError: sdk_probe.fns:keyword_only must take no argument or one"),
        ("sdk_probe.fns:missing", "ValueError: module 'sdk_probe.fns' has no function 'missing'"),
        ("sdk_probe.fns:NOT_A_FUNCTION", "ValueError: module 'sdk_probe.fns' has no function 'NOT_A_FUNCTION'"),
        ("sdk_probe.nope:train", "ModuleNotFoundError: No module named 'sdk_probe.nope'"),
        ("sdk_probe.fns", "ValueError: entrypoint must be package.module:function"),
    ],
)
def test_main_reports_an_uncallable_entrypoint(
    entrypoints: Path, capsys: pytest.CaptureFixture[str], entrypoint: str, reason: str
) -> None:
    assert sdk.main([entrypoint]) == sdk.ENTRYPOINT_NOT_CALLABLE
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line.startswith(f"training entrypoint {entrypoint}: ")
    assert reason in last_line
    assert not entrypoints.exists()


def test_main_outside_the_platform_names_the_missing_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in tc.TRAINING_VARS:
        monkeypatch.delenv(var.name, raising=False)
    assert sdk.main(["os:getcwd"]) == sdk.ENTRYPOINT_NOT_CALLABLE
    err = capsys.readouterr().err
    assert "not run by the platform's training runner" in err and tc.RUN_ID.name in err
