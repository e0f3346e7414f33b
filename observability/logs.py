"""Central logs: the Grafana Alloy pipeline that ships the stack's pod logs to Loki.

Alloy reads the logs of the pods in the stack's namespaces through the Kubernetes API (`loki.source.kubernetes`:
no host path, so it runs under Pod Security `restricted` with a Role per namespace, not a node agent) and pushes
them to the stack's Loki. Every stream is labelled with `stack`, `namespace`, `pod`, `container`, `app` and, for
serving pods, `model`; JSON lines (the serving service's) also get their `level` as a label and their
`request_id` as structured metadata (never a label: one stream per request would ruin Loki's index).
`dashboards.request_id_logql` finds every line of one request id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from observability import names

LOKI_PORT = 3100
PUSH_PATH = "/loki/api/v1/push"

# (Kubernetes service discovery label, stream label)
STREAM_LABELS = (
    ("__meta_kubernetes_namespace", names.NAMESPACE),
    ("__meta_kubernetes_pod_name", names.POD),
    ("__meta_kubernetes_pod_container_name", "container"),
    (names.discovered_pod_label("app.kubernetes.io/name"), "app"),
    (names.discovered_pod_label(names.SERVING_MODEL_POD_LABEL), names.MODEL),
)


@dataclass(frozen=True)
class LogPipeline:
    stack: str
    namespaces: Sequence[str]
    loki_url: str  # base URL of Loki's HTTP API, e.g. http://loki.mlops-dev-monitoring.svc.cluster.local:3100


def _string(value: str) -> str:
    return json.dumps(value)  # Alloy strings are double-quoted with JSON escapes


def alloy_config(p: LogPipeline) -> str:
    """The Alloy configuration (its own syntax) of the log pipeline."""
    if not p.namespaces:
        raise ValueError("the log pipeline needs at least one namespace")
    namespaces = ", ".join(_string(ns) for ns in sorted(set(p.namespaces)))
    rules = "".join(
        f"  rule {{\n    source_labels = [{_string(source)}]\n    target_label  = {_string(target)}\n  }}\n"
        for source, target in STREAM_LABELS
    )
    rules += f'  rule {{\n    target_label = "stack"\n    replacement  = {_string(p.stack)}\n  }}\n'
    push = p.loki_url.rstrip("/") + PUSH_PATH
    return (
        'discovery.kubernetes "pods" {\n'
        '  role = "pod"\n'
        "  namespaces {\n"
        f"    names = [{namespaces}]\n"
        "  }\n"
        "}\n\n"
        'discovery.relabel "pods" {\n'
        "  targets = discovery.kubernetes.pods.targets\n"
        f"{rules}"
        "}\n\n"
        'loki.source.kubernetes "pods" {\n'
        "  targets    = discovery.relabel.pods.output\n"
        "  forward_to = [loki.process.pods.receiver]\n"
        "}\n\n"
        'loki.process "pods" {\n'
        "  stage.json {\n"
        '    expressions = { request_id = "request_id", level = "level" }\n'
        "  }\n"
        "  stage.labels {\n"
        '    values = { level = "" }\n'
        "  }\n"
        "  stage.structured_metadata {\n"
        '    values = { request_id = "" }\n'
        "  }\n"
        "  forward_to = [loki.write.loki.receiver]\n"
        "}\n\n"
        'loki.write "loki" {\n'
        "  endpoint {\n"
        f"    url = {_string(push)}\n"
        "  }\n"
        "}\n"
    )
