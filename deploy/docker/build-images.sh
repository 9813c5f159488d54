#!/usr/bin/env bash
# `make images`: the three images with podman or docker, whichever works here. Exit 2 with
# one line saying why when neither can build (no engine installed, or a client whose
# engine does not answer), so CI without an engine fails clearly instead of half-way.
# TAG (default 0.1.0), REGISTRY (default ghcr.io/crypto-lakehouse) and ENGINE (podman or
# docker) may be set; PREFECT_VERSION must match the prefect-server Dockerfile.
set -euo pipefail
TAG=${TAG:-0.1.0}
REGISTRY=${REGISTRY:-ghcr.io/crypto-lakehouse}
PREFECT_VERSION=${PREFECT_VERSION:-3.9.1}

engine=${ENGINE:-}
if [ -z "$engine" ]; then
  for candidate in podman docker; do
    if command -v "$candidate" >/dev/null 2>&1; then
      engine=$candidate
      break
    fi
  done
fi
if [ -z "$engine" ]; then
  echo "images: neither podman nor docker is installed; install one to build the images" >&2
  exit 2
fi
if ! "$engine" info >/dev/null 2>&1; then
  echo "images: '$engine' is installed but its engine does not answer ('$engine info' failed)" >&2
  exit 2
fi

cd "$(dirname "$0")/../.."
"$engine" build -f deploy/docker/app/Dockerfile -t "$REGISTRY/crypto-lakehouse:$TAG" .
"$engine" build -f deploy/docker/executor/Dockerfile -t "$REGISTRY/s5cmd-executor:$TAG" .
"$engine" build -t "$REGISTRY/prefect-server:$PREFECT_VERSION" deploy/docker/prefect-server
echo "images: built $REGISTRY/{crypto-lakehouse:$TAG,s5cmd-executor:$TAG,prefect-server:$PREFECT_VERSION} with $engine"
