"""The apply-order checks (harness.order) on small fake runs: each rule passes a run whose dependencies are right and
fails, naming the object and what it misses, a run where they are not: objects and Helm releases wait for their
Namespace (transitively; a component's children count), custom resources for the release installing their CRD, Jobs
for the Secrets, ConfigMaps and claims they mount and the Services, workloads, releases and cloud databases they talk
to; `pulumi destroy --exclude-protected` keeps the Namespace of a protected object that depends on it and deletes it
with the object otherwise; a Namespace's replacement is refused when a protected object takes the Namespace's name,
and deletes the protected objects (and StatefulSet claims) that do not."""

from __future__ import annotations

import dataclasses
from typing import Any

from harness import checks, order
from harness.mocks import Registration
from tests.harness.fakes import COMPONENT_URN, after, custom, helm, k8s, reg, run_of


def protected(registration: Registration) -> Registration:
    return dataclasses.replace(registration, protect=True)


def namespace(name: str = "apps") -> Registration:
    return k8s("Namespace", name, namespace=None)


def job(name: str, pod: dict[str, Any], namespace: str = "apps") -> Registration:
    template = {"spec": {"restartPolicy": "OnFailure", **pod}}
    return k8s("Job", name, namespace, spec={"template": template})


def container(**extra: Any) -> dict[str, Any]:
    return {"name": "c", "image": "busybox:1.37", **extra}


def statefulset(name: str, namespace: str = "data") -> Registration:
    labels = {"app": name}
    return k8s(
        "StatefulSet",
        name,
        namespace,
        spec={
            "serviceName": name,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container()]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}],
        },
    )


# --- objects wait for their Namespace ----------------------------------------------------------------------------
def test_an_object_that_takes_the_namespace_name_waits_for_it() -> None:
    ns = namespace()
    assert order.namespace_problems(run_of(ns, after(k8s("Secret", "s"), ns, via="metadata"))) == []


def test_an_object_with_a_plain_namespace_name_is_reported() -> None:
    ns = namespace()
    assert order.namespace_problems(run_of(ns, k8s("Secret", "s"))) == [
        "Secret apps/s (secret-s) does not wait for its Namespace apps (namespace-apps)"
    ]


def test_waiting_is_transitive_and_a_component_stands_for_its_children() -> None:
    parent = reg("mlops:test:Namespaces", "namespaces", {}, custom=False)
    ns = dataclasses.replace(namespace(), parent=parent.urn)
    config = after(k8s("ConfigMap", "c"), ns)
    secret = after(k8s("Secret", "s"), config)
    through_component = after(k8s("Secret", "t"), parent)
    assert order.namespace_problems(run_of(parent, ns, config, secret, through_component)) == []


def test_a_namespace_the_stack_does_not_create_needs_no_waiting() -> None:
    assert order.namespace_problems(run_of(k8s("Secret", "s", "kube-system"), helm("x", "x", "1", {}, "other"))) == []


def test_a_release_waits_for_its_namespace_and_for_the_namespaces_its_values_name() -> None:
    apps, logs = namespace(), namespace("logs")
    release = helm("alloy", "alloy", "1.11.1", {"rbac": {"namespaces": ["logs"]}})
    assert order.namespace_problems(run_of(apps, logs, release)) == [
        "Release apps/alloy (release-alloy) does not wait for its Namespace apps (namespace-apps)",
        "Release apps/alloy (release-alloy) does not wait for the Namespace logs (namespace-logs)",
    ]
    assert order.namespace_problems(run_of(apps, logs, after(release, apps, logs))) == []


# --- custom resources wait for their CRD's release ---------------------------------------------------------------
def test_a_custom_resource_waits_for_the_release_that_installs_its_crd() -> None:
    release = helm("cert-manager", "cert-manager", "v1.21.1", {}, "cert-manager")
    issuer = custom("cert-manager.io/v1", "ClusterIssuer", "ca", namespace=None, spec={"selfSigned": {}})
    assert order.crd_problems(run_of(release, issuer)) == [
        "ClusterIssuer ca (clusterissuer-ca) does not wait for Release cert-manager/cert-manager "
        "(release-cert-manager), which installs its CRD"
    ]
    assert order.crd_problems(run_of(release, after(issuer, release))) == []
    # cert-manager installed by someone else: the CRD is the cluster's
    assert order.crd_problems(run_of(issuer)) == []


def test_a_custom_resource_of_an_undeclared_group_is_reported() -> None:
    widget = custom("example.com/v1", "Widget", "w")
    assert order.crd_problems(run_of(widget)) == [
        "Widget apps/w (widget-w): no chart is declared to install the CRDs of example.com (CRD_CHARTS)"
    ]


def test_every_crd_the_charts_install_has_its_chart() -> None:
    """The groups of ../shared/crds (files named `<group>_<plural>.yaml`, as harness.crds reads them), per chart that
    installs them, are exactly what CRD_CHARTS maps."""
    charts = {"cert-manager": "cert-manager", "traefik": "traefik", "prometheus-operator": "kube-prometheus-stack"}
    found = {path.name.split("_")[0]: charts[path.parent.parent.name] for path in checks.crds_dir().glob("*/*/*.yaml")}
    assert found == order.CRD_CHARTS


# --- Jobs wait for what they work on -----------------------------------------------------------------------------
def test_a_job_waits_for_the_secrets_configmaps_and_claims_it_mounts() -> None:
    ns = namespace()
    secret, script = k8s("Secret", "creds"), k8s("ConfigMap", "script")
    pod = {
        "containers": [container(envFrom=[{"secretRef": {"name": "creds"}}])],
        "volumes": [{"name": "s", "configMap": {"name": "script"}}],
    }
    bare = after(job("work", pod), ns, via="metadata")
    assert order.job_problems(run_of(ns, secret, script, bare)) == [
        "Job apps/work (job-work) mounts or reads ConfigMap script but does not wait for ConfigMap apps/script "
        "(configmap-script)",
        "Job apps/work (job-work) mounts or reads Secret creds but does not wait for Secret apps/creds (secret-creds)",
    ]
    assert order.job_problems(run_of(ns, secret, script, after(bare, secret, script))) == []


def test_a_cronjob_waits_for_its_claim() -> None:
    claim = k8s("PersistentVolumeClaim", "logs")
    pod = {"containers": [container()], "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "logs"}}]}
    prune = k8s(
        "CronJob", "prune", spec={"schedule": "1 * * * *", "jobTemplate": {"spec": {"template": {"spec": pod}}}}
    )
    assert order.job_problems(run_of(claim, prune)) == [
        "CronJob apps/prune (cronjob-prune) mounts or reads PersistentVolumeClaim logs but does not wait for "
        "PersistentVolumeClaim apps/logs (persistentvolumeclaim-logs)"
    ]
    assert order.job_problems(run_of(claim, after(prune, claim))) == []


def test_a_job_waits_for_the_service_it_talks_to_and_the_workload_behind_it() -> None:
    server = statefulset("postgres")
    service = k8s("Service", "postgres", "data", spec={"selector": {"app": "postgres"}, "ports": [{"port": 5432}]})
    env = [{"name": "PGHOST", "value": "postgres.data.svc.cluster.local"}]
    bootstrap = job("bootstrap", {"containers": [container(env=env)]}, "data")
    assert order.job_problems(run_of(server, service, after(bootstrap, service))) == [
        "Job data/bootstrap (job-bootstrap) talks to postgres.data but does not wait for StatefulSet data/postgres "
        "(statefulset-postgres)"
    ]
    assert order.job_problems(run_of(server, service, after(bootstrap, server, service))) == []


def test_a_job_waits_for_the_release_rendering_the_service_it_talks_to() -> None:
    release = helm("mlflow", "mlflow", "1.11.5", {}, "ml")
    env = [{"name": "MLFLOW_URL", "value": "http://mlflow.ml.svc.cluster.local:80"}]
    client = job("client", {"containers": [container(env=env)]}, "ml")
    assert order.job_problems(run_of(release, client)) == [
        "Job ml/client (job-client) talks to mlflow.ml but does not wait for Release ml/mlflow (release-mlflow)"
    ]
    assert order.job_problems(run_of(release, after(client, release))) == []


def test_a_service_of_the_stack_that_nothing_creates_is_reported() -> None:
    env = [{"name": "URL", "value": "http://ghost.apps.svc:80"}]
    assert order.job_problems(run_of(namespace(), job("j", {"containers": [container(env=env)]}))) == [
        "Job apps/j (job-j) talks to ghost.apps, which the program does not create"
    ]


def test_a_job_waits_for_the_cloud_database_whose_address_it_holds() -> None:
    address = "mlops-prod-x.c123.eu-west-1.rds.amazonaws.com"
    rds = reg("aws:rds/instance:Instance", "database-rds", {}, outputs={"address": address})
    bootstrap = job("bootstrap", {"containers": [container(env=[{"name": "PGHOST", "value": address}])]})
    assert order.job_problems(run_of(rds, bootstrap)) == [
        f"Job apps/bootstrap (job-bootstrap) talks to {address} but does not wait for Instance database-rds "
        "(database-rds)"
    ]
    assert order.job_problems(run_of(rds, after(bootstrap, rds))) == []


# --- deletion: destroy --exclude-protected and a Namespace's replacement -----------------------------------------
def test_destroy_keeps_the_namespace_of_a_protected_object_that_takes_its_name() -> None:
    ns = namespace("data")
    server = protected(after(statefulset("postgres"), ns, via="metadata"))
    other = after(k8s("ConfigMap", "settings", "data"), ns, via="metadata")
    run = run_of(ns, server, other)
    plan = order.destroy_plan(run)
    assert ns.urn in plan.kept and server.urn in plan.kept
    assert [r.urn for r in plan.deleted] == [other.urn]
    assert order.deletion_problems(run) == []


def test_destroy_deletes_a_namespace_with_the_protected_objects_that_do_not_depend_on_it() -> None:
    ns = namespace("data")
    run = run_of(ns, protected(statefulset("postgres")))
    assert order.destroy_plan(run).deleted == (ns,)
    problems = order.deletion_problems(run)
    destroy = "pulumi destroy --exclude-protected deletes Namespace data (namespace-data), and with it the protected"
    assert f"{destroy} StatefulSet data/postgres (statefulset-postgres)" in problems
    assert (
        f"{destroy} PersistentVolumeClaim data/data-postgres-0 of StatefulSet data/postgres (statefulset-postgres)"
        in problems
    )


def test_a_protected_objects_parent_keeps_what_the_parent_depends_on() -> None:
    """As `pulumi destroy` computes it: a protected resource keeps its parent, and so the parent's dependencies."""
    ns = namespace("data")
    component = after(reg("mlops:test:Database", "database", {}, parent=None, custom=False), ns)
    server = dataclasses.replace(protected(statefulset("postgres")), parent=component.urn)
    assert ns.urn in order.destroy_plan(run_of(ns, component, server)).kept


def test_replacing_a_namespace_is_refused_when_a_protected_object_takes_its_name() -> None:
    ns = namespace("data")
    server = protected(after(statefulset("postgres"), ns, via="metadata"))
    assert order.deletion_problems(run_of(ns, server)) == []


def test_replacing_a_namespace_deletes_protected_objects_that_merely_wait_for_it() -> None:
    """depends_on alone orders creation but does not make the engine replace the object with the Namespace."""
    ns = namespace("data")
    server = protected(after(statefulset("postgres"), ns))
    claim = after(k8s("PersistentVolumeClaim", "logs", "data"), ns, via="metadata")  # unprotected: replaced
    assert order.deletion_problems(run_of(ns, server, claim)) == [
        "replacing Namespace data (namespace-data) deletes the protected StatefulSet data/postgres "
        "(statefulset-postgres)",
        "replacing Namespace data (namespace-data) deletes the protected PersistentVolumeClaim data/data-postgres-0 "
        "of StatefulSet data/postgres (statefulset-postgres)",
    ]


def test_a_release_takes_the_namespace_through_its_namespace_input() -> None:
    ns = namespace("data")
    release = protected(after(helm("db", "cluster", "0.8.1", {}, "data"), ns, via="namespace"))
    assert order.deletion_problems(run_of(ns, release)) == []


def test_a_retained_namespace_takes_nothing() -> None:
    ns = dataclasses.replace(namespace("cert-manager"), retain_on_delete=True)
    assert order.deletion_problems(run_of(ns, protected(k8s("Secret", "ca", "cert-manager")))) == []


def test_deleting_a_volume_takes_the_protected_claim_bound_to_it() -> None:
    claim = protected(k8s("PersistentVolumeClaim", "logs", spec={"volumeName": "pv-logs"}))
    volume = k8s("PersistentVolume", "pv-logs", None, spec={"claimRef": {"namespace": "apps", "name": "logs"}})
    assert order.deletion_problems(run_of(claim, volume)) == [
        "pulumi destroy --exclude-protected deletes PersistentVolume pv-logs (persistentvolume-pv-logs), and with it "
        "the protected PersistentVolumeClaim apps/logs (persistentvolumeclaim-logs)"
    ]
    assert order.deletion_problems(run_of(claim, protected(volume))) == []


# --- wired into the harness ----------------------------------------------------------------------------------------
def test_problems_runs_every_rule() -> None:
    ns = namespace("data")
    release = helm("cert-manager", "cert-manager", "v1.21.1", {}, "data")
    issuer = custom("cert-manager.io/v1", "ClusterIssuer", "ca", namespace=None, spec={"selfSigned": {}})
    pod = {"containers": [container(envFrom=[{"secretRef": {"name": "creds"}}])]}
    work = after(job("work", pod, "data"), ns, via="metadata")
    run = run_of(ns, after(release, ns), issuer, k8s("Secret", "creds", "data"), work, protected(statefulset("pg")))
    rules = [order.namespace_problems, order.crd_problems, order.job_problems, order.deletion_problems]
    found = [rule(run) for rule in rules]
    assert all(found), found
    assert order.problems(run) == [p for rule_problems in found for p in rule_problems]


def test_all_problems_includes_the_apply_order() -> None:
    ns = namespace()
    secret = dataclasses.replace(k8s("Secret", "s", type="Opaque"), parent=COMPONENT_URN)
    found = checks.all_problems(run_of(ns, secret), "1.30")["apply order"]
    assert found == ["Secret apps/s (secret-s) does not wait for its Namespace apps (namespace-apps)"]
