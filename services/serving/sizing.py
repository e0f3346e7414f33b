"""Memory sizing of a serving pod: one definition for the service and the stack settings.

Measured resident memory of one serving worker, and of one loader process, with mlflow, sklearn and
pandas imported and a small model loaded: ~260-270 MiB each; `PROCESS_MEMORY_BYTES` rounds that up
to leave room for a second version during a hot swap. The service uses it to decide whether the
container has room for loader processes (`loader_process_fits`); the stack settings use it to refuse
a profile whose memory limit cannot hold `serving.workers` workers (`min_memory_bytes`), which would
otherwise be OOM-killed in the cluster. This module imports nothing heavy: the Pulumi program loads it.
"""

from __future__ import annotations

import re

PROCESS_MEMORY_BYTES = 320 * 1024 * 1024

_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "m": 1e-3,
}
QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")


def quantity_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity ("512Mi", "1G", "1.5Gi") in bytes."""
    match = QUANTITY.match(quantity.strip())
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {quantity!r}")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit or ""])


def min_memory_bytes(workers: int) -> int:
    """The smallest memory limit that holds `workers` serving processes (model loads in threads)."""
    return workers * PROCESS_MEMORY_BYTES


def loader_process_fits(workers: int, limit: int | None) -> bool:
    """A loader process per worker doubles the processes; use them only when the limit allows it."""
    return limit is None or limit >= 2 * workers * PROCESS_MEMORY_BYTES
