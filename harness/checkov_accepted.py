"""The checkov findings accepted on the stacks' rendered objects, each with its reason: the ONE place they are
listed. An entry is a check id, the objects it covers (kind, namespace and name as shell-style globs) and the stacks
it applies to; tests/harness/test_checkov.py fails on any finding no entry accepts, and on an entry that no longer
accepts anything (delete it then)."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from harness.checkov import Finding


@dataclass(frozen=True)
class Accepted:
    check: str
    kind: str
    namespace: str
    name: str
    stacks: tuple[str, ...]
    reason: str

    def accepts(self, finding: Finding, stack: str) -> bool:
        o = finding.obj
        return (
            stack in self.stacks
            and finding.check == self.check
            and fnmatchcase(o.kind, self.kind)
            and fnmatchcase(o.namespace, self.namespace)
            and fnmatchcase(o.name, self.name)
        )


DEV = ("dev",)
BOTH = ("dev", "prod")

_TAGS = "dev runs images by tag by design (it follows a tag's fixes; prod pins every image by digest)"
_IMAGE_USER = (
    "runs as the official image's own user (postgres 999, mlflow 1001: the owner of its files); a UID >= 10000 "
    "guards against colliding with a host user, which no host namespace or hostPath mount here could reach"
)

ACCEPTED: tuple[Accepted, ...] = (
    Accepted("CKV_K8S_43", "*", "*", "*", DEV, _TAGS),
    Accepted("CKV_K8S_15", "*", "*", "*", DEV, f"{_TAGS}; by digest (prod), IfNotPresent pulls the same bytes"),
    Accepted("CKV_K8S_40", "StatefulSet", "*-data", "postgres", DEV, _IMAGE_USER),
    Accepted(
        "CKV_SECRET_6",
        "ConfigMap",
        "*-data",
        "db-bootstrap-sql",
        BOTH,
        "the quoted strings are the paths of the mounted password files psql and sh read "
        "(/var/run/secrets/mlops/db-bootstrap/<ROLE>); no value: the passwords are in the Secret only",
    ),
    Accepted(
        "CKV_SECRET_6",
        "Deployment",
        "*-api",
        "platform-api",
        BOTH,
        "the pod annotation is a SHA-256 digest of the admin tokens (the pods roll when one is rotated): a one-way "
        "hash of random 256-bit tokens, not a credential",
    ),
    Accepted("CKV_K8S_40", "Job", "*-data", "db-bootstrap-*", BOTH, _IMAGE_USER),
    Accepted("CKV_K8S_40", "Job", "*-mlflow", "mlflow-client-user", BOTH, _IMAGE_USER),
    *(
        Accepted(
            check,
            "Job",
            "*-storage",
            "prepare-serving-logs-*",
            DEV,
            "the one-off Job that creates the NFS directories and hands them to their owners: chown needs root and "
            f"CAP_CHOWN ({why}); it runs to completion before any workload mounts the share",
        )
        for check, why in (("CKV_K8S_23", "root"), ("CKV_K8S_25", "an added capability"), ("CKV_K8S_40", "UID 0"))
    ),
)


def accepted(finding: Finding, stack: str) -> Accepted | None:
    """The entry that accepts `finding` on `stack`, or None."""
    return next((a for a in ACCEPTED if a.accepts(finding, stack)), None)
