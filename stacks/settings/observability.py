"""Settings group `observability.*`: monitoring and central logs."""

from __future__ import annotations

from dataclasses import dataclass

from stacks.settings.engine import by_env, check_quantity, setting

_DURATION = r"^[0-9]+(s|m|h|d|w|y)$"


@dataclass(frozen=True)
class ObservabilitySettings:
    """Monitoring (Prometheus, Alertmanager, Grafana) and central logs (Loki, Alloy) of the stack:
    docs/observability.md."""

    enabled: bool = setting(
        "observability.enabled",
        "deploy monitoring and central logs with the stack (kube-prometheus-stack, Loki, Alloy)",
        default=True,
    )
    retention: str = setting(
        "observability.retention",
        "how long Prometheus keeps samples (a Prometheus duration: 15d, 8w)",
        default_fn=by_env("15d", "30d"),
        pattern=_DURATION,
    )
    retention_size: str | None = setting(
        "observability.retentionSize",
        "Prometheus deletes the oldest blocks beyond this size (e.g. 40GB); unset = by time only",
        pattern=r"^[0-9]+(KB|MB|GB|TB)$",
    )
    storage_size: str = setting(
        "observability.storageSize",
        "Prometheus volume size",
        default_fn=by_env("20Gi", "100Gi"),
        check=check_quantity,
    )
    storage_class: str | None = setting(
        "observability.storageClass",
        "StorageClass of the Prometheus, Alertmanager and Loki volumes; unset = cluster default",
    )
    scrape_interval: str = setting(
        "observability.scrapeInterval", "how often Prometheus scrapes every target", default="30s", pattern=_DURATION
    )
    log_retention_days: int = setting(
        "observability.logRetentionDays",
        "days Loki keeps log lines (deleted by its compactor)",
        default_fn=by_env(14, 30),
        minimum=1,
        maximum=3650,
    )
    log_storage_size: str = setting(
        "observability.logStorageSize",
        "Loki's volume (write-ahead log, index cache); chunks live in the bucket",
        default="10Gi",
        check=check_quantity,
    )
