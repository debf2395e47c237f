#!/usr/bin/env bash
# Install the Helm CLI that the chart tests and CI use, once, into the repo's cache.
#
#   deploy/helm.sh          build helm (if missing or the wrong version) and print its path
#
# Helm is compiled from source with the Go toolchain (`go install`), because the Go module proxy is
# the one distribution channel CI can reach; there is no docker and no release-tarball download.
# The first build takes a few minutes on 2 cores; later runs return immediately.
#
# Environment: HELM_VERSION (v3.22.0), OPSINTEL_CACHE (the repo's .cache/; the binary lands in
# $OPSINTEL_CACHE/bin/helm). Go's module and build caches stay where `go env` puts them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
version="${HELM_VERSION:-v3.22.0}"
bin="${OPSINTEL_CACHE:-$root/.cache}/bin"
helm="$bin/helm"

say() { printf 'helm: %s\n' "$*" >&2; }

installed_version() {
  # `helm version --template` prints the semver without the git suffix; empty when absent or broken
  [ -x "$helm" ] && "$helm" version --template '{{ .Version }}' 2>/dev/null || true
}

if [ "$(installed_version)" != "$version" ]; then
  command -v go >/dev/null || { say "Go is required to build helm (go install helm.sh/helm/v3/cmd/helm)"; exit 1; }
  mkdir -p "$bin"
  say "building helm $version into $bin (once; takes a few minutes)"
  start=$SECONDS
  # -ldflags stamp the version the way helm's Makefile does; otherwise `helm version` reports a dev
  # build and `helm lint` checks chart kubeVersion constraints against the wrong version.
  GOBIN="$bin" CGO_ENABLED=0 go install \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version" \
    "helm.sh/helm/v3/cmd/helm@$version"
  say "built in $((SECONDS - start)) s"
  [ "$(installed_version)" = "$version" ] || { say "built binary does not report $version"; exit 1; }
fi
echo "$helm"
