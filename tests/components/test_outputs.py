"""Each component declares its outputs as typed class attributes and registers exactly those: the
whole program under mocks, both stacks, every component instance (an output whose value is None, such
as MLflow's admin Secret without basic auth, is not recorded by the engine)."""

from __future__ import annotations

import inspect
from typing import Any

import pulumi
import pytest

from components.airflow import AirflowPlatform
from components.artifact_store import ArtifactStore
from components.database import Database
from components.endpoints import Endpoints
from components.ingress import IngressController
from components.logging import CentralLogs
from components.mlflow import MlflowServer
from components.monitoring import Monitoring
from components.namespaces import PlatformNamespaces
from components.network_policies import NetworkPolicies
from components.platform_api import PlatformApi
from components.serving import ServingService
from components.shared_storage import SharedStorage
from components.tls import TlsIssuers
from harness.run import ProgramRun

COMPONENTS: dict[str, type[pulumi.ComponentResource]] = {
    "mlops:platform:AirflowPlatform": AirflowPlatform,
    "mlops:platform:ArtifactStore": ArtifactStore,
    "mlops:platform:CentralLogs": CentralLogs,
    "mlops:platform:Database": Database,
    "mlops:platform:Endpoints": Endpoints,
    "mlops:platform:IngressController": IngressController,
    "mlops:platform:MlflowServer": MlflowServer,
    "mlops:platform:Monitoring": Monitoring,
    "mlops:platform:Namespaces": PlatformNamespaces,
    "mlops:platform:NetworkPolicies": NetworkPolicies,
    "mlops:platform:PlatformApi": PlatformApi,
    "mlops:platform:ServingService": ServingService,
    "mlops:platform:SharedStorage": SharedStorage,
    "mlops:platform:TlsIssuers": TlsIssuers,
}


def declared_outputs(cls: type) -> dict[str, str]:
    """Attribute -> its type as written (the modules use postponed annotations)."""
    return {name: str(kind) for name, kind in inspect.get_annotations(cls).items()}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_component_registers_exactly_its_declared_outputs(stack: str, stack_run: Any) -> None:
    run: ProgramRun = stack_run(stack)
    components = [r for r in run.registrations if r.type.startswith("mlops:platform:")]
    assert {r.type for r in components} == set(COMPONENTS)
    for reg in components:
        declared = declared_outputs(COMPONENTS[reg.type])
        assert declared, f"{reg.type} declares no outputs"
        assert reg.registered_outputs is not None, f"{reg.name} registered no outputs"
        registered = set(reg.registered_outputs)
        assert registered <= set(declared), f"{reg.name} registers undeclared {registered - set(declared)}"
        # an output whose value is None is not recorded: only optional attributes may be missing
        missing = {name for name in set(declared) - registered if not declared[name].endswith("| None")}
        assert missing == set(), f"{reg.name} does not register {missing}"


def test_declared_outputs_are_documented() -> None:
    """The class docstring says what the component builds and points at the attributes it exports."""
    for cls in COMPONENTS.values():
        doc = cls.__doc__ or ""
        assert doc.startswith("Builds"), cls.__name__
        assert "Exports the attribute" in doc, cls.__name__
