"""The gpu profile's images (profiles/gpu/Dockerfile): hadolint-clean; NVIDIA's CUDA runtime image with cuDNN at an
exact release as the base; the serving target runs the serving service exactly as services/serving/Dockerfile does
(the lock's serving group, the Python and uv releases of that image, its command, port and non-root user); the
training target runs the Airflow release the DAGs are tested with and the DAGs' libraries of the Airflow image, as
the official image's user; and the shipped gpu profile names these targets."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from services.common import contract
from services.common.catalog import DEFAULT_PROFILES, GPU_DOCKERFILE
from services.serving import SERVING_COMMAND
from tests.services.serving.test_dockerfile import lint
from tools.delivery.images import stages

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / GPU_DOCKERFILE
STAGES = {name: (base, body) for name, base, body in stages(DOCKERFILE.read_text())}


def args(stage: str, word: str) -> list[list[str]]:
    return [a for w, a in STAGES[stage][1] if w == word]


def runs(stage: str) -> str:
    return "\n".join(" ".join(a) for a in args(stage, "RUN"))


def test_hadolint_passes() -> None:
    done = lint(DOCKERFILE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_shipped_gpu_profile_builds_its_two_images_from_the_stages_here() -> None:
    assert DEFAULT_PROFILES["gpu"]["images"] == {
        "training": {"dockerfile": GPU_DOCKERFILE, "target": "training", "image": "gpu-training"},
        "serving": {"dockerfile": GPU_DOCKERFILE, "target": "serving", "image": "gpu-serving"},
    }
    assert list(STAGES) == ["cuda", "serving", "training"]
    assert STAGES["serving"][0] == STAGES["training"][0] == "cuda"


def test_the_base_is_a_cuda_runtime_with_cudnn_at_an_exact_release_and_the_servings_python_and_uv() -> None:
    base = STAGES["cuda"][0]
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+(@sha256:[0-9a-f]{64})?", base), base
    serving = (ROOT / "services" / "serving" / "Dockerfile").read_text()
    python = re.search(r"^FROM python:(3\.11\.\d+)-", serving, re.M)
    uv = re.search(r"^COPY --from=(ghcr\.io/astral-sh/uv:\S+) ", serving, re.M)
    assert python and uv
    assert ["--from=" + uv.group(1), "/uv", "/usr/local/bin/uv"] in args("cuda", "COPY")
    assert f"uv python install {python.group(1)}" in runs("cuda")
    assert f"uv venv --python {python.group(1)} /opt/venv" in runs("cuda")
    assert args("cuda", "ENTRYPOINT") == [[]]  # the pod's command or the executor's args run as written


def test_the_serving_target_runs_the_serving_service_like_its_own_image() -> None:
    sync = [r for r in runs("serving").splitlines() if "uv sync" in r]
    assert sync and "--frozen" in sync[0] and "--no-default-groups --group serving" in sync[0]
    assert ["services/", "./services/"] in args("serving", "COPY")
    (cmd,) = args("serving", "CMD")
    assert tuple(cmd) == SERVING_COMMAND
    assert args("serving", "EXPOSE") == [[str(contract.SERVING_PORT)]]
    user = args("serving", "USER")[-1][0].split(":")[0]
    assert user.isdigit() and int(user) != 0


def test_the_training_target_runs_the_tested_airflow_with_the_dags_libraries() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    airflow = next(p["version"] for p in lock["package"] if p["name"] == "apache-airflow")
    text = runs("training")
    assert f"apache-airflow[amazon,cncf.kubernetes,postgres]=={airflow}" in text
    (constraints,) = [a for a in args("training", "ADD") if a[0].startswith("https://")]
    assert constraints[0] == (
        f"https://raw.githubusercontent.com/apache/airflow/constraints-{airflow}/constraints-3.11.txt"
    )
    assert f"--constraint {constraints[1]}" in text
    # the DAGs' libraries: the same requirements file as the platform's Airflow image
    (requirements,) = [a for a in args("training", "COPY") if a[0] == "services/airflow/requirements.txt"]
    assert f"--requirement {requirements[1]}" in text
    assert "services/airflow/requirements.txt" in (ROOT / "services" / "airflow" / "Dockerfile").read_text()
    # the official image's user and home, which the chart's security contexts and mounts expect
    assert args("training", "USER") == [["50000:0"]]
    env = dict(kv.split("=", 1) for a in args("training", "ENV") for kv in a)
    assert env["AIRFLOW_HOME"] == "/opt/airflow"


@pytest.mark.parametrize("stage", ["serving", "training"])
def test_uv_builds_the_environment_and_does_not_stay_in_the_image(stage: str) -> None:
    assert "rm /usr/local/bin/uv" in runs(stage)
