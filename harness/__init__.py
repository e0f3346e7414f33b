"""The offline proof harness: runs the Pulumi program under mocks and checks what it would deploy.

- `harness.mocks`: realistic provider stand-ins and a monitor that records every registration.
- `harness.run`: runs `infra/__main__.py` with a real `Pulumi.<stack>.yaml`.
- `harness.checks`: Kubernetes schemas, Helm chart schemas, cross-references, secrets.
- `harness.crds`: custom resources strictly against their CRDs' schemas (../shared/crds).
- `harness.preview`: `make preview` (resource tree and exports, or JSON).
"""
