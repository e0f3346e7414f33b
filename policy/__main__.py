"""Entry point the Pulumi CLI runs for `--policy-pack policy`: it only builds the pack.

Constructing `PolicyPack` starts the analyzer's gRPC server and blocks until the CLI stops it, so
nothing else may live here; the policies are in `policy/policies.py` (importable and tested).
"""

import sys
from pathlib import Path

# The CLI runs this file with the pack directory as the working directory; make `policy.*` importable.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from policy.policies import PACK_NAME, POLICIES  # noqa: E402

PolicyPack(name=PACK_NAME, policies=POLICIES, enforcement_level=EnforcementLevel.MANDATORY)
