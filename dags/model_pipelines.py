"""One training DAG (`train_<model>`) and one manual-rollback DAG (`rollback_<model>`) per model of the catalog.

The catalog is the JSON file that MLOPS_MODEL_CATALOG names (the ConfigMap the Pulumi program writes, mounted in
every Airflow component; `make demo` writes its own). A missing or invalid catalog raises an error naming the
variable and the problem: Airflow shows it as this file's import error. What the DAGs do: mlops_tasks.pipelines.
"""

from __future__ import annotations

from mlops_tasks.pipelines import dags_for

from services.common import catalog_file

# Module-level names: Airflow collects the DAGs it finds in this module's globals.
globals().update(dags_for(catalog_file.load()))
