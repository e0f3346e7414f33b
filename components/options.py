"""Resource-option helpers shared by the components (no ComponentResource here)."""

from __future__ import annotations

import pulumi


def inherited_depends_on(opts: pulumi.ResourceOptions | None) -> list[pulumi.Resource]:
    """The `depends_on` a component was given. Children do not inherit it from their parent, so a
    component passes it on to the children that must wait (e.g. a Helm release for its database).
    Namespaces never travel this way: an object waits for its Namespace by taking its name
    (`components.namespaces.NamespaceRef`)."""
    deps = opts.depends_on if opts is not None else None
    if deps is None:
        return []
    if isinstance(deps, (list, tuple)):
        return [d for d in deps if isinstance(d, pulumi.Resource)]
    return [deps] if isinstance(deps, pulumi.Resource) else []
