"""Validate the rendered manifests (`kubectl kustomize deploy/kubernetes`) offline.

Run by validate.sh, which installs what this needs. Three layers, each a
failure when it finds something:

1. Every built-in object against the Kubernetes OpenAPI schemas of each
   version given (kubernetes-validate, strict: an unknown field is an error,
   as the API server's strict field validation makes it).
2. The CloudNativePG `Cluster` against the CRD's own schema
   (schemas/postgresql.cnpg.io_v1_cluster.json, from CloudNativePG v1.30.0),
   made strict the same way, its metadata against ObjectMeta, and the CRD's
   CEL rules that concern the fields set here, written out by hand. A kind
   neither layer knows is an error, never a silent pass.
3. What no schema says but the stack relies on: selectors that select
   something, references that resolve, the restricted security context, the
   grace period above preStop + DRAIN_TIMEOUT, a default-deny policy.

With --self-test, broken copies of the manifests (BROKEN) must each be
refused by the layer meant to catch them: proof that the checks can fail.

Not checked: the API server's other semantic validation, the CloudNativePG
admission webhook, admission policies of a real cluster (docs in README.md).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import re
import sys
from pathlib import Path

import jsonschema
import yaml
from kubernetes_validate import utils as kv
from referencing import Registry, Resource

# Each kv.validate call reads its schema and the 1.3 MB definitions file
# again; read each once.
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)

HERE = Path(__file__).resolve().parent
CNPG_SCHEMA = HERE / "schemas" / "postgresql.cnpg.io_v1_cluster.json"

errors: list[str] = []


def error(obj: dict, message: str) -> None:
    errors.append(f"{obj['kind']}/{obj['metadata'].get('name', '?')}: {message}")


# --- 1. Built-in kinds ------------------------------------------------------


def validate_builtin(obj: dict, version: str) -> None:
    try:
        kv.validate(obj, version, strict=True)
    except kv.ValidationError as e:
        path = ".".join(str(p) for p in e.path) or "(root)"
        error(obj, f"Kubernetes {version} schema: {path}: {e.message}")
    except kv.SchemaNotFoundError:
        error(obj, f"no schema for {obj['apiVersion']} {obj['kind']} in Kubernetes {version}")


# --- 2. CloudNativePG Cluster -----------------------------------------------


def strict(schema):
    """Refuse unknown fields wherever the CRD lists the fields of an object."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def object_meta_validator(version: str) -> jsonschema.Validator:
    schema_dir = "v%s-local-strict" % [v for v in kv.all_versions() if kv.major_minor(v) <= version][-1]
    defs = kv.schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", version)
    ref = {
        "$id": "https://kubernetes.io/api/objectmeta",
        "$ref": "/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    }
    registry = Resource.from_contents(defs) @ Registry()
    return jsonschema.Draft202012Validator(ref, registry=registry)


# The CRD's x-kubernetes-validations (CEL) on fields this stack sets; the
# API server evaluates them, jsonschema cannot.
CNPG_RULES = [
    (
        lambda s: not ("imageCatalogRef" in s and "imageName" in s),
        "spec: imageName and imageCatalogRef are mutually exclusive",
    ),
    (
        lambda s: s.get("postgresql", {}).get("synchronous", {}).get("number", 1) > 0,
        "spec.postgresql.synchronous.number: must be greater than zero",
    ),
    (
        lambda s: (sync := s.get("postgresql", {}).get("synchronous", {})).get("dataDurability") != "preferred"
        or not (sync.get("standbyNamesPre") or sync.get("standbyNamesPost")),
        "spec.postgresql.synchronous: dataDurability 'preferred' requires no standbyNamesPre/Post",
    ),
]


def validate_cnpg_cluster(obj: dict, versions: list[str]) -> None:
    validator = jsonschema.Draft4Validator(strict(json.loads(CNPG_SCHEMA.read_text())))
    for e in validator.iter_errors(obj):
        path = ".".join(str(p) for p in e.path) or "(root)"
        error(obj, f"CloudNativePG v1.30.0 schema: {path}: {e.message}")
    for version in versions:
        for e in object_meta_validator(version).iter_errors(obj["metadata"]):
            error(obj, f"metadata (Kubernetes {version} ObjectMeta): {e.message}")
    spec = obj.get("spec", {})
    for rule, message in CNPG_RULES:
        if not rule(spec):
            error(obj, message)
    # A synchronous standby count the cluster can meet while one instance is
    # down (the operator's webhook refuses more standbys than instances - 1).
    number = spec.get("postgresql", {}).get("synchronous", {}).get("number")
    if number is not None and not 1 <= number <= spec.get("instances", 1) - 1:
        error(obj, f"synchronous.number {number} needs at least {number + 1} instances")


CUSTOM = {("postgresql.cnpg.io/v1", "Cluster"): validate_cnpg_cluster}

# Secrets the manifests refer to that the user creates (README.md).
USER_SECRETS = {"hitcounter-admin"}


# --- 3. What the stack relies on --------------------------------------------


def matches(selector: dict, labels: dict) -> bool:
    """matchLabels (or a plain map) and matchExpressions In/NotIn/Exists."""
    structured = "matchLabels" in selector or "matchExpressions" in selector
    plain = selector.get("matchLabels", {}) if structured else selector
    if any(labels.get(k) != v for k, v in plain.items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def seconds(duration: str) -> float:
    """The subset of humantime the ConfigMap uses: 10s, 500ms, 1m."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration)
    if not m:
        raise ValueError(f"unsupported duration {duration!r}")
    return float(m[1]) * {"ms": 0.001, "s": 1, "m": 60}[m[2]]


def check_stack(objs: list[dict]) -> None:
    by_kind: dict[str, dict[str, dict]] = {}
    for o in objs:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    deployments = by_kind.get("Deployment", {})
    clusters = by_kind.get("Cluster", {})
    configmaps = by_kind.get("ConfigMap", {})
    # Pods of the namespace: each Deployment's template, and CloudNativePG's
    # instances (labelled with the cluster's name, among others).
    pods = {f"Deployment/{n}": d["spec"]["template"] for n, d in deployments.items()}
    pods |= {f"Cluster/{n}": {"metadata": {"labels": {"cnpg.io/cluster": n}}, "spec": {}} for n in clusters}
    # Secrets the operator generates for each Cluster, and the one the user
    # creates (README.md, "The secret"): no other may be referred to.
    generated_secrets = {f"{n}-{suffix}" for n in clusters for suffix in ("app", "ca", "server", "replication")}
    generated_secrets |= USER_SECRETS

    def selects(selector: dict) -> list[str]:
        return [name for name, tpl in pods.items() if matches(selector, tpl["metadata"].get("labels", {}))]

    for name, d in deployments.items():
        tpl = d["spec"]["template"]
        if not matches(d["spec"]["selector"], tpl["metadata"].get("labels", {})):
            error(d, "spec.selector does not match the pod template's labels")
        pod_sc = tpl["spec"].get("securityContext", {})
        if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            error(d, "pod securityContext.seccompProfile.type must be RuntimeDefault")
        for c in tpl["spec"].get("initContainers", []) + tpl["spec"]["containers"]:
            sc = c.get("securityContext", {})
            where = f"container {c['name']}: securityContext"
            if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
                error(d, f"{where}.runAsNonRoot must be true")
            if sc.get("allowPrivilegeEscalation") is not False:
                error(d, f"{where}.allowPrivilegeEscalation must be false")
            if sc.get("readOnlyRootFilesystem") is not True:
                error(d, f"{where}.readOnlyRootFilesystem must be true")
            if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
                error(d, f"{where}.capabilities must drop ALL and add nothing")
            env = {}
            for source in c.get("envFrom", []):
                ref = source.get("configMapRef", {}).get("name")
                if ref is not None:
                    if ref not in configmaps:
                        error(d, f"container {c['name']}: envFrom ConfigMap {ref} is not in the manifests")
                    else:
                        env |= configmaps[ref].get("data", {})
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional") and ref["name"] not in generated_secrets:
                    error(d, f"env {var['name']}: Secret {ref['name']} is neither optional, nor generated by the operator, nor in USER_SECRETS")
                if "value" in var:
                    env[var["name"]] = var["value"]
            for vol in tpl["spec"].get("volumes", []):
                secret = vol.get("secret", {}).get("secretName")
                if secret and not vol["secret"].get("optional") and secret not in generated_secrets:
                    error(d, f"volume {vol['name']}: Secret {secret} is neither optional, nor generated by the operator, nor in USER_SECRETS")
            # Stopping: preStop pause, then the app's own drain, inside the grace period.
            if "DRAIN_TIMEOUT" in env:
                pause = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
                grace = tpl["spec"].get("terminationGracePeriodSeconds", 30)
                if grace <= pause + seconds(env["DRAIN_TIMEOUT"]):
                    error(d, f"terminationGracePeriodSeconds {grace} must exceed preStop {pause} s + DRAIN_TIMEOUT {env['DRAIN_TIMEOUT']}")
                if pause <= 0:
                    error(d, f"container {c['name']}: a preStop pause lets endpoints drain before SIGTERM")

    for kind in ("Service", "PodDisruptionBudget"):
        for name, o in by_kind.get(kind, {}).items():
            selector = o["spec"].get("selector", {})
            if not selects(selector):
                error(o, f"selector {selector} selects no pod of the manifests")
    for name, svc in by_kind.get("Service", {}).items():
        for pod in selects(svc["spec"]["selector"]):
            ports = {p.get("name") for c in pods[pod]["spec"].get("containers", []) for p in c.get("ports", [])}
            for p in svc["spec"]["ports"]:
                if isinstance(p.get("targetPort"), str) and p["targetPort"] not in ports:
                    error(svc, f"targetPort {p['targetPort']} is not a port of {pod}")
    for name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
        ref = hpa["spec"]["scaleTargetRef"]
        if ref["kind"] != "Deployment" or ref["name"] not in deployments:
            error(hpa, f"scaleTargetRef {ref['kind']}/{ref['name']} is not in the manifests")
    for name, ing in by_kind.get("Ingress", {}).items():
        for rule in ing["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"]["service"]
                svc = by_kind.get("Service", {}).get(backend["name"])
                if svc is None:
                    error(ing, f"backend Service {backend['name']} is not in the manifests")
                elif backend["port"].get("name") not in {p.get("name") for p in svc["spec"]["ports"]} and backend[
                    "port"
                ].get("number") not in {p["port"] for p in svc["spec"]["ports"]}:
                    error(ing, f"backend port {backend['port']} is not a port of Service {backend['name']}")

    policies = by_kind.get("NetworkPolicy", {})
    if not any(
        p["spec"]["podSelector"] == {}
        and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
        for p in policies.values()
    ):
        errors.append("NetworkPolicy: no default-deny policy (podSelector {}, Ingress and Egress, no rules)")
    for name, p in policies.items():
        selectors = [p["spec"]["podSelector"]]
        for rule in p["spec"].get("ingress", []) + p["spec"].get("egress", []):
            for peer in rule.get("from", []) + rule.get("to", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    selectors.append(peer["podSelector"])
        for selector in selectors:
            if selector and not selects(selector):
                error(p, f"podSelector {selector} selects no pod of the manifests")


def validate(objs: list[dict], versions: list[str]) -> list[str]:
    """Every error found in the rendered objects (empty: all good)."""
    errors.clear()
    for obj in objs:
        custom = CUSTOM.get((obj["apiVersion"], obj["kind"]))
        if custom:
            custom(obj, versions)
        else:
            for version in versions:
                validate_builtin(obj, version)
    check_stack(objs)
    return list(errors)


def find(objs: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)


def app_container(objs: list[dict]) -> dict:
    return find(objs, "Deployment", "hitcounter")["spec"]["template"]["spec"]["containers"][0]


def sync(objs: list[dict]) -> dict:
    return find(objs, "Cluster", "hitcounter-db")["spec"]["postgresql"]["synchronous"]


# Broken copies of the manifests that must be refused, and a word the error
# must contain: proof that each layer can fail.
BROKEN = [
    ("an unknown field (preStop sleep.second beside seconds)",
     lambda o: app_container(o)["lifecycle"]["preStop"]["sleep"].update(second=5), "'second' was unexpected"),
    ("a wrong type (replicas: three)",
     lambda o: find(o, "Deployment", "hitcounter")["spec"].update(replicas="three"), "replicas"),
    ("a misspelt Cluster field (instancess)",
     lambda o: find(o, "Cluster", "hitcounter-db")["spec"].update(instancess=3), "instancess"),
    ("a synchronous method CloudNativePG lacks (all)", lambda o: sync(o).update(method="all"), "method"),
    ("more synchronous standbys than the cluster has", lambda o: sync(o).update(number=3), "synchronous"),
    ("a Cluster label that is not a string",
     lambda o: find(o, "Cluster", "hitcounter-db")["metadata"]["labels"].update(tier=1), "metadata"),
    ("a grace period shorter than preStop + DRAIN_TIMEOUT",
     lambda o: find(o, "Deployment", "hitcounter")["spec"]["template"]["spec"].update(
         terminationGracePeriodSeconds=12), "terminationGracePeriodSeconds"),
    ("privilege escalation allowed",
     lambda o: app_container(o)["securityContext"].update(allowPrivilegeEscalation=True), "allowPrivilegeEscalation"),
    ("a Service selecting no pod",
     lambda o: find(o, "Service", "redis")["spec"]["selector"].update({"app.kubernetes.io/name": "rediss"}), "selects no pod"),
    ("a Secret nobody creates",
     lambda o: app_container(o)["env"][0]["valueFrom"]["secretKeyRef"].update(name="hitcounter-dbb-app"), "Secret"),
    ("a kind no schema knows",
     lambda o: o.append({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}), "no schema"),
    ("no default-deny NetworkPolicy",
     lambda o: o.remove(find(o, "NetworkPolicy", "default-deny")), "default-deny"),
]


def self_test(objs: list[dict], versions: list[str], verbose: bool) -> int:
    missed = []
    for what, breaks, word in BROKEN:
        broken = copy.deepcopy(objs)
        breaks(broken)
        found = validate(broken, versions)
        if not any(word in e for e in found):
            missed.append(f"{what}: not refused (errors: {found})")
        elif verbose:
            print(f"refused {what}: {found[0]}")
    for m in missed:
        print(f"SELF-TEST FAILED {m}")
    print(f"self-test: {len(BROKEN) - len(missed)} of {len(BROKEN)} broken copies refused")
    return 1 if missed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rendered", help="output of kubectl kustomize")
    parser.add_argument("-k", "--kubernetes-version", action="append", required=True)
    parser.add_argument("--self-test", action="store_true", help="also check that broken copies are refused")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the first error of each broken copy")
    args = parser.parse_args()

    objs = [o for o in yaml.safe_load_all(Path(args.rendered).read_text()) if o]
    found = validate(objs, args.kubernetes_version)
    counts: dict[str, int] = {}
    for obj in objs:
        counts[obj["kind"]] = counts.get(obj["kind"], 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    for e in found:
        print(f"ERROR {e}")
    print(
        f"{len(objs)} objects ({summary}) against Kubernetes {' and '.join(args.kubernetes_version)}"
        f" and CloudNativePG v1.30.0: {len(found)} error(s)"
    )
    if found:
        return 1
    return self_test(objs, args.kubernetes_version, args.verbose) if args.self_test else 0


if __name__ == "__main__":
    sys.exit(main())
