"""NetworkPolicies of one stack: every namespace of the stack denies by default, then admits the platform's flows.

A `Flow` says which pods (`sources`) may open which ports on which pods (`target`). The component renders it on
both ends, because both ends deny by default: an ingress rule in the target's namespace and an egress rule in each
source's namespace, each only where the namespace is one of the stack's (`namespaces`; a peer elsewhere, such as
an existing ingress controller's namespace or the cluster's DNS, gets no policy from here). A peer is the pods of a
namespace (all of them, or those matching labels) or address ranges outside the cluster (`cidrs`). No ComponentResource
of the stack needs to know the others' policies: the composition (infra/network.py) lists the flows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs
from pulumi_kubernetes.networking.v1 import (
    IPBlockArgs,
    NetworkPolicy,
    NetworkPolicyEgressRuleArgs,
    NetworkPolicyIngressRuleArgs,
    NetworkPolicyPeerArgs,
    NetworkPolicyPortArgs,
    NetworkPolicySpecArgs,
)

from components.namespaces import NamespaceRef
from components.naming import labels

NAMESPACE_LABEL = "kubernetes.io/metadata.name"  # set by Kubernetes on every namespace
DNS_NAMESPACE = "kube-system"
DNS_PODS = {"k8s-app": "kube-dns"}  # CoreDNS on kubeadm, kind, k3s and EKS alike
ANY_NAMESPACE = "*"  # a peer in every namespace (an empty namespace selector)
DEFAULT_DENY = "default-deny"
ALLOW_DNS = "allow-dns"


@dataclass(frozen=True)
class Peer:
    """The pods of `namespace` (every one when `pods` is None, else those whose labels include `pods`; namespace
    `ANY_NAMESPACE`: of every namespace), or, with `cidrs`, addresses outside the cluster."""

    namespace: str | None = None
    pods: Mapping[str, str] | None = None
    cidrs: Sequence[str] = ()

    def __post_init__(self) -> None:
        if (self.namespace is None) == (not self.cidrs):
            raise ValueError("a peer is either the pods of a namespace or address ranges (cidrs)")

    def peers(self) -> list[NetworkPolicyPeerArgs]:
        """This peer as the `from`/`to` entries of a rule: one per address range, or one namespace (and pod)
        selector."""
        if self.cidrs:
            return [NetworkPolicyPeerArgs(ip_block=IPBlockArgs(cidr=cidr)) for cidr in self.cidrs]
        return [
            NetworkPolicyPeerArgs(
                namespace_selector=LabelSelectorArgs(
                    match_labels=None if self.namespace == ANY_NAMESPACE else {NAMESPACE_LABEL: str(self.namespace)}
                ),
                pod_selector=LabelSelectorArgs(match_labels=dict(self.pods)) if self.pods is not None else None,
            )
        ]

    @property
    def selector(self) -> LabelSelectorArgs:
        """The pods of this peer within its own namespace."""
        return LabelSelectorArgs(match_labels=dict(self.pods or {}))


Port = int | tuple[int, str]  # a TCP port, or (port, protocol)


@dataclass(frozen=True)
class Flow:
    """`sources` may connect to `target` on `ports` (TCP unless a protocol is given; empty = every port). `name` names
    the policies it renders (`<name>-in` in the target's namespace, `<name>-out` in each source's)."""

    name: str
    target: Peer
    sources: Sequence[Peer]
    ports: Sequence[Port] = ()
    why: str = ""

    def port_args(self) -> list[NetworkPolicyPortArgs] | None:
        if not self.ports:
            return None
        out = []
        for port in self.ports:
            number, protocol = port if isinstance(port, tuple) else (port, "TCP")
            out.append(NetworkPolicyPortArgs(port=number, protocol=protocol))
        return out


@dataclass(frozen=True)
class NetworkPoliciesArgs:
    """`namespaces`: the stack's namespaces (each denies by default and may resolve DNS); `flows`: what is admitted,
    naming namespaces by their names."""

    namespaces: Sequence[NamespaceRef]
    flows: Sequence[Flow]
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        namespaces = [ns.name for ns in self.namespaces]
        if len(set(namespaces)) != len(namespaces):
            raise ValueError(f"namespaces must be distinct: {namespaces}")
        names = [f.name for f in self.flows]
        if len(set(names)) != len(names):
            raise ValueError(f"flow names must be distinct: {sorted(n for n in set(names) if names.count(n) > 1)}")


class NetworkPolicies(pulumi.ComponentResource):
    """Builds, in each of the stack's namespaces, `allow-dns` (egress to the cluster DNS on 53/UDP and 53/TCP), for
    each flow its ingress policy in the target's namespace and its egress policy in each source's namespace (when
    that namespace is the stack's), and last `default-deny` (every pod, ingress and egress), created after the
    namespace's allows.

    Exports the attribute below.
    """

    policies: dict[str, list[str]]
    """Namespace -> the names of the NetworkPolicies rendered there."""

    def __init__(self, name: str, args: NetworkPoliciesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:platform:NetworkPolicies", name, None, opts)
        self._name = name
        self._labels = labels(component="network-policy", base=args.labels)
        self._refs = {ref.name: ref for ref in args.namespaces}
        ours = set(self._refs)
        self.policies = {ns: [] for ns in self._refs}
        dns = Peer(DNS_NAMESPACE, DNS_PODS)
        allows: dict[str, list[pulumi.Resource]] = {ns: [] for ns in self._refs}
        for ns in self._refs:
            allows[ns].append(
                self._policy(
                    ns,
                    ALLOW_DNS,
                    LabelSelectorArgs(),
                    egress=[
                        NetworkPolicyEgressRuleArgs(
                            to=dns.peers(),
                            ports=[NetworkPolicyPortArgs(port=53, protocol=p) for p in ("UDP", "TCP")],
                        )
                    ],
                )
            )
        for flow in args.flows:
            target = flow.target
            if target.namespace in ours:
                sources = [peer for source in flow.sources for peer in source.peers()]
                allows[target.namespace].append(
                    self._policy(
                        target.namespace,
                        f"{flow.name}-in",
                        target.selector,
                        ingress=[NetworkPolicyIngressRuleArgs(from_=sources, ports=flow.port_args())],
                    )
                )
            for index, source in enumerate(s for s in flow.sources if s.namespace in ours):
                suffix = "" if index == 0 else f"-{index + 1}"
                assert source.namespace is not None
                allows[source.namespace].append(
                    self._policy(
                        source.namespace,
                        f"{flow.name}-out{suffix}",
                        source.selector,
                        egress=[NetworkPolicyEgressRuleArgs(to=target.peers(), ports=flow.port_args())],
                    )
                )
        # the deny comes last: an update never has a moment that denies what the allows are about to admit
        for ns in self._refs:
            self._policy(ns, DEFAULT_DENY, LabelSelectorArgs(), ingress=[], egress=[], after=allows[ns])
        self.register_outputs({"policies": self.policies})

    def _policy(
        self,
        namespace: str,
        policy: str,
        pods: LabelSelectorArgs,
        ingress: list[NetworkPolicyIngressRuleArgs] | None = None,
        egress: list[NetworkPolicyEgressRuleArgs] | None = None,
        after: Sequence[pulumi.Resource] = (),
    ) -> NetworkPolicy:
        types = [t for t, rules in (("Ingress", ingress), ("Egress", egress)) if rules is not None]
        self.policies[namespace].append(policy)
        return NetworkPolicy(
            f"{self._name}-{namespace}-{policy}",
            metadata=ObjectMetaArgs(name=policy, namespace=self._refs[namespace].output, labels=self._labels),
            spec=NetworkPolicySpecArgs(pod_selector=pods, policy_types=types, ingress=ingress, egress=egress),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(after)),
        )
