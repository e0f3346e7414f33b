"""The cross-checks: rules that involve more than one key (or a key and the model catalog), run on the loaded
`StackSettings`; each appends its problems, naming the stack file and the key."""

from __future__ import annotations

import re

from services.common import git_access
from services.common.catalog import IMAGE_KINDS, Source
from services.common.serving_rules import quantity_bytes
from stacks.settings.airflow import GIT_CREDENTIALS_PREFIX, GIT_KNOWN_HOSTS_KEY
from stacks.settings.artifacts import CONSUMERS, SLOTS, credential_key
from stacks.settings.database import GIVEN_PARTS, PROVISIONED_APPS
from stacks.settings.engine import DNS_NAME, PROJECT, quote
from stacks.settings.images import IMAGE_NAMES, ImageRef
from stacks.settings.stack import PLATFORM_HOSTS, StackSettings


def check_images(s: StackSettings, problems: list[str]) -> None:
    """Prod runs every platform image pinned by digest (the deploy workflow passes the digests).

    Unset in prod is still accepted while the components fall back to serving.image/serving.imageTag and
    airflow.imageRepository/airflow.imageTag; once those keys are retired, unset must be refused here too."""
    if not s.is_prod:
        return
    for name in IMAGE_NAMES:
        key = f"{PROJECT}:images.{name}"
        ref = s.images.image(name)
        if ref is not None and not ref.pinned:
            problems.append(
                f"{s.source}: {key} must be pinned by digest in prod (<repository>@sha256:<64 hex>); "
                f"got {quote(getattr(s.images, name))}"
            )
    for name, value in sorted(s.images.profiles.items()):
        if not ImageRef.parse(value).pinned:
            problems.append(
                f"{s.source}: {PROJECT}:images.profiles.{name} must be pinned by digest in prod "
                f"(<repository>@sha256:<64 hex>); got {quote(value)}"
            )
    for name, value in sorted(s.images.third_party.items()):
        if not ImageRef.parse(value).pinned:
            problems.append(
                f"{s.source}: {PROJECT}:images.thirdParty.{name} must be pinned by digest in prod "
                f"(<repository>:<tag>@sha256:<64 hex>); got {quote(value)}"
            )
    if s.mlflow.image_tag:
        problems.append(
            f"{s.source}: {PROJECT}:mlflow.imageTag runs MLflow by tag, which prod does not: set "
            f"{PROJECT}:images.thirdParty.mlflow to <repository>:<tag>@sha256:<64 hex> instead"
        )


def cross_checks(s: StackSettings, problems: list[str]) -> None:
    """Rules that involve more than one key."""
    check_images(s, problems)
    _check_rds(s, problems)
    _check_external(s, problems)
    _check_artifacts(s, problems)
    _check_mode_keys(s, problems)
    _check_models(s, problems)
    _check_sources(s, problems)
    _check_api(s, problems)
    _check_prod_safety(s, problems)


def _check_rds(s: StackSettings, problems: list[str]) -> None:
    """An RDS database needs its network: two subnets, the VPC and the CIDRs allowed to reach it."""
    if s.database.mode != "rds":
        return
    src, ns = s.source, f"{PROJECT}:"
    if len(s.database.subnet_ids) < 2:
        problems.append(f"{src}: {ns}database.subnetIds needs at least two subnets when database.mode is rds")
    if not s.database.vpc_id:
        problems.append(f"{src}: {ns}database.vpcId is required when database.mode is rds")
    if not s.database.allowed_cidrs:
        problems.append(f"{src}: {ns}database.allowedCidrs is required when database.mode is rds (the cluster network)")


def _check_external(s: StackSettings, problems: list[str]) -> None:
    """An external database needs its host, the admin the bootstrap runs as, the address range its clients may
    reach, and the CA that verify-ca/verify-full check the server against."""
    db = s.database
    if db.mode != "external":
        return
    src, ns = s.source, f"{PROJECT}:"
    required: list[tuple[str, object]] = [("host", db.host), ("cidr", db.cidr)]
    if db.provisioned:
        for app, role in PROVISIONED_APPS.items():
            if role != "mlflow_auth" or s.mlflow.basic_auth:
                required += [(f"credentials.{app}.{part}", getattr(db, f"{role}_{part}")) for part in GIVEN_PARTS]
    else:
        required += [("adminUser", db.admin_user), ("adminPassword", db.admin_password)]
    for key, value in required:
        if value is None:
            why = "database.provisioned is true" if key.startswith("credentials.") else "database.mode is external"
            problems.append(f"{src}: {ns}database.{key} is required when {why}")
    if db.sslmode in ("verify-ca", "verify-full") and db.ca_certificate is None:
        problems.append(
            f"{src}: {ns}database.caCertificate is required when database.sslmode is {db.sslmode} (the PEM CA the "
            "server's certificate is checked against)"
        )


def artifact_consumers(s: StackSettings) -> tuple[str, ...]:
    """The consumers of the artifact store in this stack: MLflow, Airflow, and Loki with observability.enabled."""
    return tuple(c for c in CONSUMERS if c != "loki" or s.observability.enabled)


def _check_artifacts(s: StackSettings, problems: list[str]) -> None:
    """An S3-compatible store needs its endpoint, bucket and address range, and each consumer's active slot holds a
    complete key (a slot is both its id and its secret, or neither). The keys of one mode are refused in the other."""
    a, src, ns = s.artifacts, s.source, f"{PROJECT}:"
    only_compatible = {
        "endpoint": a.endpoint,
        "caCertificate": a.ca_certificate,
        "bucket": a.bucket,
        "cidr": a.cidr,
        **{
            credential_key(c, part, slot).removeprefix("artifacts."): getattr(a, f"{c}_{slot}_{attr}")
            for c in CONSUMERS
            for slot in SLOTS
            for part, attr in (("accessKeyId", "access_key_id"), ("secretAccessKey", "secret_access_key"))
        },
    }
    if not a.s3_compatible:
        problems.extend(
            f"{src}: {ns}artifacts.{key} is only read when artifacts.mode is s3Compatible (it is {a.mode})"
            for key, value in only_compatible.items()
            if value is not None
        )
        return
    if a.kms_key_arn is not None:
        problems.append(
            f"{src}: {ns}artifacts.kmsKeyArn is an AWS setting: unset it when artifacts.mode is s3Compatible"
        )
    for key in ("endpoint", "bucket", "cidr"):
        if only_compatible[key] is None:
            problems.append(f"{src}: {ns}artifacts.{key} is required when artifacts.mode is s3Compatible")
    for consumer in CONSUMERS:
        _check_slots(s, consumer, consumer in artifact_consumers(s), problems)


def _check_slots(s: StackSettings, consumer: str, used: bool, problems: list[str]) -> None:
    """A slot is complete (id and secret) or empty; the active slot of a consumer in use is complete."""
    a, src, ns = s.artifacts, s.source, f"{PROJECT}:"
    active = a.active_slot(consumer)
    for slot in SLOTS:
        parts = {
            "accessKeyId": getattr(a, f"{consumer}_{slot}_access_key_id"),
            "secretAccessKey": getattr(a, f"{consumer}_{slot}_secret_access_key"),
        }
        missing = [part for part, value in parts.items() if value is None]
        if len(missing) == 1:
            given = next(part for part in parts if part not in missing)
            problems.append(
                f"{src}: {ns}{credential_key(consumer, missing[0], slot)} is required: "
                f"{credential_key(consumer, given, slot)} is set (a slot holds both or neither)"
            )
        elif missing and used and slot == active:
            problems.extend(
                f"{src}: {ns}{credential_key(consumer, part, slot)} is required when "
                f"{credential_key(consumer, 'active')} is {active} (artifacts.mode is s3Compatible)"
                for part in missing
            )


def _check_mode_keys(s: StackSettings, problems: list[str]) -> None:
    """The keys a mode requires: an existing ingress controller's class and namespace, an EFS access point's file
    system, ACME's email."""
    src, ns = s.source, f"{PROJECT}:"
    if s.ingress.controller == "existing":
        for key, value in (
            ("className", s.ingress.class_name),
            ("controllerNamespace", s.ingress.controller_namespace),
        ):
            if not value:
                problems.append(f"{src}: {ns}ingress.{key} is required when ingress.controller is existing")
    if s.nfs.mode == "efsAccessPoint" and not s.nfs.file_system_id:
        problems.append(
            f"{src}: {ns}nfs.efsFileSystemId is required when nfs.mode is efsAccessPoint and nfs.server is not an "
            f"EFS DNS name (fs-....efs.<region>.amazonaws.com); got nfs.server {quote(s.nfs.server)}"
        )
    if s.ingress.tls_issuer == "acme" and not s.ingress.acme_email:
        problems.append(f"{src}: {ns}ingress.acmeEmail is required when ingress.tlsIssuer is acme")


def _check_prod_safety(s: StackSettings, problems: list[str]) -> None:
    """Prod keeps its resources protected, and its RDS database multi-AZ with deletion protection."""
    if not s.is_prod:
        return
    src, ns = s.source, f"{PROJECT}:"
    if not s.protect:
        problems.append(f"{src}: {ns}protect must stay true in prod")
    if s.database.mode == "rds":
        for key, on in (("multiAz", s.database.multi_az), ("deletionProtection", s.database.deletion_protection)):
            if not on:
                problems.append(f"{src}: {ns}database.{key} must stay true in prod")


def _check_api(s: StackSettings, problems: list[str]) -> None:
    """The API pods' memory request fits their limit (Kubernetes would refuse the Deployment); the default expiry
    of tokens is within the maximum (the API would refuse to start)."""
    if s.api.token_ttl_days > s.api.token_max_ttl_days:
        problems.append(
            f"{s.source}: {PROJECT}:api.tokenTtlDays {s.api.token_ttl_days:g} is above api.tokenMaxTtlDays "
            f"{s.api.token_max_ttl_days:g}"
        )
    if s.api.admin_token_keep_previous and s.api.admin_token_generation < 2:
        problems.append(
            f"{s.source}: {PROJECT}:api.adminTokenKeepPrevious needs a previous admin token: raise "
            "api.adminTokenGeneration with it (see docs/api.md)"
        )
    requests, limits = s.api.requests, s.api.limits
    if quantity_bytes(requests["memory"]) > quantity_bytes(limits["memory"]):
        problems.append(
            f"{s.source}: {PROJECT}:api.requests memory {requests['memory']} is above api.limits memory "
            f"{limits['memory']}"
        )


def _check_models(s: StackSettings, problems: list[str]) -> None:
    """Per model: its public host under ingress.domain and unique; an s3:// dataset names a key or prefix (never a
    whole bucket). Prod: profile images pinned by digest, like the platform's."""
    src, ns = s.source, f"{PROJECT}:"
    taken = {s.host(service): f"the {service} host" for service in PLATFORM_HOSTS}
    for model, spec in sorted(s.catalog.models.items()):
        key = f"{ns}models.{model}"
        host = s.model_host(model)
        if spec.serving.host is not None and (
            not re.match(DNS_NAME, host) or not host.endswith(f".{s.ingress.domain}")
        ):
            problems.append(
                f"{src}: {key}.serving.host must be a DNS name under ingress.domain ({s.ingress.domain}); "
                f"got {quote(host)}"
            )
        elif host in taken:
            problems.append(f"{src}: {key}.serving.host {host} is already {taken[host]}")
        taken.setdefault(host, f"the host of models.{model}")
        auth = spec.serving.auth
        if s.is_prod and auth.mode == "none" and not auth.anonymous_reason:
            problems.append(
                f"{src}: {key}.serving.auth.mode none lets anyone call the model in prod: use apiKey or oidc, or "
                "say why in serving.auth.anonymousReason"
            )
        dataset = spec.training.dataset or ""
        if dataset.startswith("s3://") and not dataset.removeprefix("s3://").partition("/")[2].strip("/"):
            problems.append(
                f"{src}: {key}.training.dataset must name an object or a prefix inside its bucket, not a whole "
                f"bucket; got {quote(dataset)}"
            )
    if s.is_prod:
        built = {use for b in s.profile_builds.values() for use in b.uses}  # checked as images.profiles entries
        for name, profile in sorted(s.catalog.profiles.items()):
            for kind in IMAGE_KINDS:
                value = getattr(profile.images, kind)
                if value is not None and (name, kind) not in built and not ImageRef.parse(value).pinned:
                    problems.append(
                        f"{src}: {ns}profiles.{name}.images.{kind} must be pinned by digest in prod "
                        f"(<repository>@sha256:<64 hex>); got {quote(value)}"
                    )


def _check_sources(s: StackSettings, problems: list[str]) -> None:
    """Every fetched training source can be fetched by its pod: the credentials it names exist and fit its URL (an
    SSH key for ssh:// and git@, a token for https://), an SSH URL without named credentials has airflow.gitSshKey,
    and every SSH host (the sources' and git-sync's) has a key in airflow.gitKnownHosts."""
    src, ns, air = s.source, f"{PROJECT}:", s.airflow

    def host_key(url: str, where: str) -> None:
        host = git_access.ssh_host(url)
        if host is not None and not git_access.has_host_key(air.known_hosts, *host):
            shown = host[0] if host[1] == git_access.SSH_PORT else f"[{host[0]}]:{host[1]}"
            problems.append(
                f"{src}: {where} is on {shown}, which has no host key in {ns}{GIT_KNOWN_HOSTS_KEY} (unset: only "
                f"github.com and gitlab.com): add the keys the host publishes (`ssh-keyscan -p {host[1]} {host[0]}`, "
                "compared with its published fingerprints)"
            )

    if air.git_ssh_key is not None:
        host_key(air.git_repo, f"{ns}airflow.gitRepo {air.git_repo}")
    for model, url in s.fetched_sources.items():
        source = s.catalog.models[model].training.source
        key = f"{ns}models.{model}.training.source"
        where = f"{key}.repo {url}" if source.repo else f"{key}.ref fetches {ns}airflow.gitRepo {url}, which"
        is_ssh = git_access.ssh_host(url) is not None
        _check_source_credentials(s, source, key, where, is_ssh, problems)
        if is_ssh:
            host_key(url, where)


def _check_source_credentials(
    s: StackSettings, source: Source, key: str, where: str, is_ssh: bool, problems: list[str]
) -> None:
    """The credentials a fetched training source (at `key`; `where` names its URL) names exist and fit its URL (an
    SSH key for an SSH URL, a token for https); an SSH URL without named credentials needs airflow.gitSshKey."""
    src, ns, air = s.source, f"{PROJECT}:", s.airflow
    if source.credentials is not None:
        named = f"{ns}{GIT_CREDENTIALS_PREFIX}{source.credentials}"
        creds = air.git_credentials.get(source.credentials)
        if creds is None:
            problems.append(
                f"{src}: {key}.credentials is {source.credentials}, but neither {named}.sshKey nor {named}.token "
                "is set (`pulumi config set --secret ...`)"
            )
        elif is_ssh and creds.ssh_key is None:
            problems.append(f"{src}: {where} is an SSH URL, but {named}.sshKey is not set (a read-only deploy key)")
        elif not is_ssh and creds.token is None:
            problems.append(f"{src}: {where} is an https URL, but {named}.token is not set (a read-only token)")
    elif is_ssh and air.git_ssh_key is None:
        problems.append(
            f"{src}: {where} is an SSH URL, but neither {key}.credentials nor {ns}airflow.gitSshKey is set: the "
            "training pod would have no key to fetch it with"
        )
