#!/usr/bin/env bash
# What the tests need besides the Python and npm packages of `make setup`, installed the same way everywhere:
# .ci/run (CI on the project's machines) and the workflows' setup action (GitHub's runners) both run this
# script, and tests/tools/test_install_test_dependencies.py keeps it so.
#
#   1. Prometheus' own tools for the observability tests: Debian's (and Ubuntu's) packages `prometheus`
#      (prometheus, promtool) and `prometheus-alertmanager` (prometheus-alertmanager, amtool), installed with
#      apt-get when one of those commands is missing. A service that systemd starts for them (GitHub's runners;
#      not these machines) is stopped, so nothing else listens while the tests run their own.
#   2. The material the offline proof reads (../shared/README.md): the pinned charts' values files and the CRDs
#      those charts install. ../shared beside the clone is used as it is, without the network. Where it is
#      absent, `python -m harness.fetch_charts` fetches both, at the versions the settings pin, into
#      $MLOPS_SHARED_DIR (default .local/shared); that needs helm and the network.
#
# Prints the shared folder (with charts/ and crds/) on stdout, and nothing else there; the callers export it:
#     MLOPS_SHARED_DIR=$(bash tools/install-test-dependencies.sh)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGES=(prometheus prometheus-alertmanager)
COMMANDS=(promtool prometheus prometheus-alertmanager amtool)

log() { echo "install-test-dependencies: $*" >&2; }

missing() {
  local cmd out=()
  for cmd in "${COMMANDS[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || out+=("$cmd")
  done
  echo "${out[*]}"
}

# --- 1. Prometheus' tools -------------------------------------------------------------------------------------
absent="$(missing)"
if [ -n "$absent" ]; then
  log "missing: $absent; installing ${PACKAGES[*]} with apt-get"
  as_root=()
  if [ "$(id -u)" != 0 ]; then as_root=(sudo); fi
  "${as_root[@]}" apt-get update -qq >&2
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${PACKAGES[@]}" >&2
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    "${as_root[@]}" systemctl disable --now prometheus prometheus-alertmanager >&2 || true
  fi
  absent="$(missing)"
  if [ -n "$absent" ]; then
    log "still missing after installing ${PACKAGES[*]}: $absent"
    exit 1
  fi
fi
log "Prometheus' tools: $(command -v promtool), $(command -v prometheus-alertmanager)"

# --- 2. charts and CRDs ---------------------------------------------------------------------------------------
if [ -d "$root/../shared/charts" ] && [ -d "$root/../shared/crds" ]; then
  shared="$(cd "$root/../shared" && pwd -P)"
  log "charts and CRDs: $shared, as it is"
else
  shared="${MLOPS_SHARED_DIR:-$root/.local/shared}"
  python="$root/.venv/bin/python"
  if [ ! -x "$python" ]; then
    log "no .venv yet: make setup"
    make -C "$root" setup >&2
  fi
  log "no ../shared beside the clone: fetching the pinned charts and CRDs into $shared"
  (cd "$root" && "$python" -m harness.fetch_charts "$shared") >&2
fi
echo "$shared"
