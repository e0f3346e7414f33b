"""The IngressController's Traefik, in the whole program under mocks: its TLS entry point is the one the models' gRPC
IngressRoutes bind to (HTTP redirected to it), and its CRD provider reads the namespaces of every IngressRoute and
Middleware the program renders (a route in a namespace Traefik does not watch would never be served)."""

from __future__ import annotations

from typing import Any

import pytest

from components import ingress
from harness.mocks import reveal


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_traefik_route_binds_to_the_tls_entry_point_of_a_traefik_that_reads_it(
    stack: str, stack_run: Any
) -> None:
    run = stack_run(stack)
    (release,) = [r for r in run.helm_releases() if reveal(r.inputs).get("chart") == "traefik"]
    values = reveal(release.inputs)["values"]
    ports, crd = values["ports"], values["providers"]["kubernetesCRD"]
    assert ports[ingress.WEBSECURE]["http"]["tls"]["enabled"] is True
    assert ports[ingress.WEB]["http"]["redirections"]["entryPoint"]["to"] == ingress.WEBSECURE
    traefik_objects = [
        r.manifest for r in run.kubernetes_objects() if r.manifest["apiVersion"] == "traefik.io/v1alpha1"
    ]
    routes = [m for m in traefik_objects if m["kind"] == "IngressRoute"]
    assert len(routes) == 2, "one gRPC route per model of the stack's catalog"
    assert crd["enabled"] is True
    assert {m["metadata"]["namespace"] for m in traefik_objects} <= set(crd["namespaces"])
    for route in routes:
        assert route["spec"]["entryPoints"] == [ingress.WEBSECURE]
        assert route["spec"]["tls"]["secretName"]
