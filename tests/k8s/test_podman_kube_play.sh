#!/usr/bin/env bash
# ctest k8s.podman: the Kubernetes manifests for real, with podman. Builds both images with the Dockerfile
# users build (bases from Debian's archive when missing), plays the manifests unchanged, and checks the
# seed's table from the client pod, the init containers' capabilities and rules, the sidecars' uid and
# capabilities, /healthz/ready from outside each pod and /stats from inside, and that `podman kube down`
# leaves nothing (examples/sidecar/k8s/podman/play.sh --check does all of it). Then the native sidecar
# manifests against the postStart ones. Skips (77) with the reason when podman cannot run containers here.
set -euo pipefail
repo=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)

echo "== the native sidecar form (k8s/native-sidecar/) is the postStart form's pods, rearranged"
python3 "$repo/tests/k8s/check_native_sidecar.py" "$repo/examples/sidecar/k8s"

echo "== podman kube play"
set +e
bash "$repo/examples/sidecar/k8s/podman/play.sh" --check
rc=$?
set -e
if [ "$rc" -eq 2 ]; then
  echo "SKIP: podman cannot run the manifests on this host (the reason is above)"
  exit 77
fi
exit "$rc"
