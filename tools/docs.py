"""`python -m tools.docs` (`make docs`): print docs/configuration.md (every stack setting, generated from
stacks/settings/, and the network policies of infra/network.py)."""

from infra.network import __doc__ as NETWORK_DOC
from services.common.catalog import RateLimit
from stacks.settings import MODELS_SUBDOMAIN, PLATFORM_HOSTS, PROJECT, RETIRED_KEYS, settings_table

HEADER = f"""# Configuration

Every key the program reads, generated from `stacks/settings/` (`make docs`; a test fails when this
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
trains, the serving image (`images.serving`) serves. A training image runs the Airflow task too: build it FROM the
Airflow image, or with the same Airflow and DAG libraries as `profiles/gpu/Dockerfile` does. An image is either
a reference (one without a registry path is under `images.registry`) or `{{dockerfile, target, context}}`: a
Dockerfile of this repository that `make images` and the images workflow build and push as `<profile>-<kind>`
(e.g. `gpu-serving`), recording its reference in `{PROJECT}:images.profiles`; a model that runs such an image
needs it recorded there. The shipped `gpu` profile's images are built that way, on a CUDA base
(`profiles/gpu/Dockerfile`). Prod takes images pinned by digest only.

Per model, also checked: its name is a valid registered-model name and yields a Kubernetes name (`model-<slug>`)
no other model yields; `serving.workers` fit the serving profile's memory limit; `training.schedule` is cron;
`serving.host` (default `<model>.{MODELS_SUBDOMAIN}.<ingress.domain>`) lies under `ingress.domain` and is no
other model's nor the {", ".join(PLATFORM_HOSTS)} host. A `training.dataset` in the stack's artifact bucket
(`s3://<artifactBucket>/<key or prefix>`) is readable by the training pods: the Airflow user's IAM policy grants
it, and its key reaches the pods as AWS's own variables. A dataset elsewhere is accepted but not granted: the
code needs its own access to it.

Keys of the single-model platform are refused, naming their replacement:
"""

_LIMIT = RateLimit()
_SERVING_ROWS = (
    (
        "auth.mode",
        "prod: `apiKey`, else `none`",
        "`none`: anyone who reaches the model; `apiKey`: `Authorization: Bearer <key>`; `oidc`: `Authorization: "
        "Bearer <JWT>` signed by `auth.issuer` (RS256/ES256, keys from `auth.jwksUrl`, by default from the issuer's "
        "discovery document) for `auth.audience`, not expired",
    ),
    (
        "auth.keys",
        '`["key-1"]`',
        "apiKey: names of the keys the program generates (pulumi-random). Each key is only in the secret stack output "
        "`modelApiKeys` (`pulumi stack output --show-secrets modelApiKeys`); the cluster holds their SHA-256 only "
        "(Secret `model-<model>-api-keys`, mounted whole as the keys file the service re-reads)",
    ),
    (
        "auth.keyHashes",
        "`[]`",
        "apiKey: SHA-256 (`sha256:<64 hex>`) of keys issued elsewhere (`python -m services.serving.security new-key` "
        "prints a key and its line)",
    ),
    ("auth.anonymousReason", "unset", "prod refuses `mode: none` unless this says why"),
    (
        "rateLimit",
        f"`{{average: {_LIMIT.average}, period: {_LIMIT.period}, burst: {_LIMIT.burst}, by: {_LIMIT.by}}}`",
        "per client, at the ingress (a Traefik `Middleware` named by the model's Ingress): `average` requests per "
        "`period` seconds, bursts of `burst`; beyond, 429 with `Retry-After`. `by: clientIp` counts per client "
        "address (a LoadBalancer keeps it: `externalTrafficPolicy: Local`), `by: authorization` per `Authorization` "
        "header. Traefik counts per replica (prod runs 2). Not rendered with `ingress.controller: existing`",
    ),
    (
        "maxInFlight",
        "the service's (128)",
        "predictions in flight per serving process; one more is answered 429 with `Retry-After`",
    ),
    ("publicDocs", "prod: `false`, else `true`", "whether `/docs` and `/openapi.json` are served and routed"),
)
SERVING = (
    f"""
## Serving: who may call a model, and how often

Per model, under `{PROJECT}:models.<model>.serving` (defaults depend on `environment`, like the keys above):

| key | default | what |
| --- | --- | --- |
"""
    + "\n".join(f"| `{key}` | {default} | {what} |" for key, default, what in _SERVING_ROWS)
    + """

Rotating a generated key without downtime: (1) add a name, `auth: {mode: apiKey, keys: [key-1, key-2]}`, and
`pulumi up`: both hashes are in the Secret and the pods accept both once the kubelet refreshes the mounted Secret
(about a minute; no restart); (2) hand out `modelApiKeys.<model>.key-2` and let the clients switch; (3) remove the
old name, `keys: [key-2]`, and `pulumi up`: key-1 is deleted and refused (403) from then on. A key issued elsewhere
rotates the same way through `keyHashes`. A leaked key is revoked by removing its name (a new name makes a new key).
"""
)


if __name__ == "__main__":
    print(HEADER)
    print(settings_table())
    print(CATALOG)
    for key, replacement in RETIRED_KEYS.items():
        target, _, note = replacement.partition(" ")
        print(f"- `{PROJECT}:{key}`: set `{PROJECT}:{target}`" + (f" {note}" if note else ""))
    print(SERVING)
    print("## Network policies\n")
    print((NETWORK_DOC or "").split("\n", 2)[2].strip())
