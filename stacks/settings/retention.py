"""Settings group `retention.*`: how long the platform keeps its own logs."""

from __future__ import annotations

from dataclasses import dataclass

from stacks.settings.engine import by_env, setting


@dataclass(frozen=True)
class RetentionSettings:
    """How long the platform's own logs are kept (Loki's: observability.logRetentionDays)."""

    airflow_logs_days: int = setting(
        "retention.airflowLogsDays",
        "days Airflow's task logs are kept: an S3 lifecycle rule expires the bucket's Airflow log prefix "
        "(remote logging), the log volume's daily pruning CronJob deletes older files (airflow.remoteLogging false)",
        default_fn=by_env(30, 90),
        minimum=1,
        maximum=3650,
    )
    serving_logs_days: int = setting(
        "retention.servingLogsDays",
        "days the serving log files are kept on their volume: a daily CronJob deletes older files of every pod "
        "(and the directories of pods gone since)",
        default_fn=by_env(7, 30),
        minimum=1,
        maximum=3650,
    )
