#!/usr/bin/env python3
"""The native sidecar manifests (k8s/native-sidecar/) are the postStart ones (k8s/) in Kubernetes 1.29's form.

For every pod of both forms: the same name, namespace, labels and annotations, init container podproxy-init and application
containers; in the native form the proxy is the second init container, with restartPolicy Always, a
startupProbe on /healthz/ready at 15021, and the very args, env, image and securityContext of the postStart form's
proxy container, which has the postStart hook running `podproxy-sidecar wait`. The Services are identical.
Prints one line per pod; exits 1 on the first difference, naming it.
"""
import pathlib
import sys

import yaml


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def docs(path):
    out = {}
    for d in yaml.safe_load_all(path.read_text()):
        if d:
            out[(d["kind"], d["metadata"]["namespace"], d["metadata"]["name"])] = d
    return out


def main(k8s):
    k8s = pathlib.Path(k8s)
    native_dir = k8s / "native-sidecar"
    files = sorted(p.name for p in native_dir.glob("*.yaml"))
    if not files:
        fail(f"no manifest in {native_dir}")
    for name in files:
        classic, native = docs(k8s / name), docs(native_dir / name)
        if sorted(classic) != sorted(native):
            fail(f"{name}: the two forms declare different objects: {sorted(classic)} vs {sorted(native)}")
        for key, c in classic.items():
            n = native[key]
            if key[0] != "Pod":
                if c != n:
                    fail(f"{name}: {key} differs between the forms")
                continue
            cs, ns = c["spec"], n["spec"]
            where = f"{name}: pod {key[2]}"
            proxy = next((x for x in cs["containers"] if x["name"] == "podproxy"), None)
            if proxy is None or cs["containers"][0] is not proxy:
                fail(f"{where}: the postStart form must list the podproxy container first")
            if proxy.get("lifecycle", {}).get("postStart", {}).get("exec", {}).get("command", [])[:2] != \
                    ["podproxy-sidecar", "wait"]:
                fail(f"{where}: the postStart form's proxy has no postStart `podproxy-sidecar wait`")
            inits = ns.get("initContainers", [])
            if [x["name"] for x in inits] != ["podproxy-init", "podproxy"]:
                fail(f"{where}: native init containers are {[x['name'] for x in inits]}, want podproxy-init, podproxy")
            if inits[0] != cs["initContainers"][0]:
                fail(f"{where}: podproxy-init differs between the forms")
            sidecar = inits[1]
            if sidecar.get("restartPolicy") != "Always":
                fail(f"{where}: the native proxy's restartPolicy is {sidecar.get('restartPolicy')!r}, want 'Always'")
            probe = sidecar.get("startupProbe", {}).get("httpGet", {})
            if probe.get("path") != "/healthz/ready" or probe.get("port") != 15021:
                fail(f"{where}: the native proxy's startupProbe is {probe}, want GET /healthz/ready on 15021")
            if c["metadata"] != n["metadata"]:
                fail(f"{where}: the pod's metadata (labels, scrape annotations) differs between the forms")
            for field in ("image", "args", "env", "securityContext", "readinessProbe"):
                if sidecar.get(field) != proxy.get(field):
                    fail(f"{where}: the proxy's {field} differs between the forms")
            if "lifecycle" in sidecar:
                fail(f"{where}: the native proxy keeps a lifecycle hook (the startupProbe replaces it)")
            if ns["containers"] != cs["containers"][1:]:
                fail(f"{where}: the application containers differ between the forms")
            for field in set(cs) | set(ns):
                if field not in ("initContainers", "containers") and cs.get(field) != ns.get(field):
                    fail(f"{where}: spec.{field} differs between the forms")
            print(f"ok: {where}: native sidecar form matches the postStart form")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[2] / "examples/sidecar/k8s")
