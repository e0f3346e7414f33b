"""The mlops-platform Pulumi program: `pulumi up --stack dev|prod`.

Loads the typed stack settings (stacks/), creates the AWS and Kubernetes providers and the
namespaces, composes the platform's components and exports the endpoints contract.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The program lives in infra/; the components, settings and shared contract sit beside it.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from infra.platform import build_platform  # noqa: E402
from stacks import from_pulumi  # noqa: E402

build_platform(from_pulumi())
