"""`python -m stacks`: print docs/configuration.md (every stack setting, generated from stacks/settings.py)."""

from stacks.settings import MODELS_SUBDOMAIN, PLATFORM_HOSTS, PROJECT, RETIRED_KEYS, settings_table

HEADER = f"""# Configuration

Every key the program reads, generated from `stacks/settings.py` (`make docs`; a test fails when this
file is stale). Keys live under the `{PROJECT}:` namespace in `Pulumi.<stack>.yaml`; set them with
`pulumi config set --stack <stack> <key> <value>` (objects and lists: a JSON value, e.g.
`pulumi config set database.allowedCidrs '["10.40.0.0/16"]'`, or YAML in the stack file; not `--path`,
since the keys themselves contain dots).
Defaults marked dev/prod depend on `environment` (default: the stack name). Secrets must be set with
`pulumi config set --secret`; a secret found in plaintext is an error. An unknown key is an error.
"""

CATALOG = f"""
## The model catalog: `models` and `profiles`

`{PROJECT}:models` maps each registered model name to its entry (`training`, `gate`, `serving`; the fields,
their defaults and the training contract: [models.md](models.md)). Every entry gets its own training and rollback
DAGs and its own serving deployment (Deployment, Service, autoscaler, disruption budget, NetworkPolicy, TLS
Ingress named `model-<model>`). The program writes the catalog into the ConfigMap `mlops-model-catalog` of the
Airflow namespace, mounted in every Airflow pod, with each model's in-cluster serving URL.

`{PROJECT}:profiles` are the resources of the training pods and of the serving pods (`training.profile`,
`serving.profile`): `requests` and `limits` (`cpu`, `memory`), `gpus` (`nvidia.com/gpu`, requested and limited),
`nodeSelector`, `tolerations`, `priorityClassName` and `images` (`training`, `serving`). A GPU profile must select
GPU nodes (a node selector or tolerations). `small`, `medium` and `gpu` are shipped; a profile of the stack file
adds to them or replaces the one of the same name. An image left unset is the platform's own: the Airflow image
trains (a training image must be built FROM it), the serving image (`images.serving`) serves; an image without a
registry path is under `images.registry`, and prod takes images pinned by digest only.

Per model, also checked: its name is a valid registered-model name and yields a Kubernetes name (`model-<slug>`)
no other model yields; `serving.workers` fit the serving profile's memory limit; `training.schedule` is cron;
`serving.host` (default `<model>.{MODELS_SUBDOMAIN}.<ingress.domain>`) lies under `ingress.domain` and is no
other model's nor the {", ".join(PLATFORM_HOSTS)} host. A `training.dataset` in the stack's artifact bucket
(`s3://<artifactBucket>/<key or prefix>`) is readable by the training pods: the Airflow user's IAM policy grants
it, and its key reaches the pods as AWS's own variables. A dataset elsewhere is accepted but not granted: the
code needs its own access to it.

Keys of the single-model platform are refused, naming their replacement:
"""

if __name__ == "__main__":
    print(HEADER)
    print(settings_table())
    print(CATALOG)
    for key, replacement in RETIRED_KEYS.items():
        target, _, note = replacement.partition(" ")
        print(f"- `{PROJECT}:{key}`: set `{PROJECT}:{target}`" + (f" {note}" if note else ""))
