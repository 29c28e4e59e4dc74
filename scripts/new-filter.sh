#!/usr/bin/env bash
# Creates a new filter from templates/filter/: `scripts/new-filter.sh <name>` (or
# `make new-filter NAME=<name>`) writes filters/<name>/ (the crate meshward-<name>, with a
# config, a pure core, metrics, unit tests and a README), tests/tests/<name_snake>.rs (its
# harness tests, in meshward-tests with the others), tests/tests/envoy_<name_snake>.rs (its
# tests in a real Envoy), k8s/base/<name>.yaml (a WasmPlugin, added to the base's
# kustomization, with its image pinned in k8s/overlays/example), an entry in the Envoy
# Gateway policy (k8s/envoy-gateway), a row of the dashboard (k8s/monitoring, described in
# README.md; scripts/new_filter_wire.py makes these edits) and envoy-config/<name>.yaml
# (an Envoy example, which `make run CONFIG=envoy-config/<name>.yaml` starts). `make test`
# passes right after it, with no hand edits (scripts/test-new-filter.sh checks that). In the
# templates `__NAME__` is the name (`hello-probe`) and `__SNAKE__` its snake_case form
# (`hello_probe`); a file ending in `.tmpl` loses that ending. docs/writing-a-filter.md
# walks through the result.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
template="$root/templates/filter"
name=${1:-}

fail() {
  echo "new-filter: $*" >&2
  exit 1
}

[[ -n "$name" ]] || fail "give the filter a name: make new-filter NAME=my-filter"
[[ "$name" =~ ^[a-z][a-z0-9]*(-[a-z0-9]+)*$ ]] ||
  fail "NAME must be lowercase kebab-case (letters, digits, single dashes, starting with a letter), got \"$name\""
(( ${#name} <= 40 )) || fail "NAME must be at most 40 characters, got ${#name}"
snake=${name//-/_}

# Nothing of the new filter may exist yet, and its package name must be free: "shared",
# "harness" or "tests" would clash with meshward-shared, meshward-harness, meshward-tests.
for path in "filters/$name" "k8s/base/$name.yaml" "envoy-config/$name.yaml" "tests/tests/$snake.rs" \
  "tests/tests/envoy_$snake.rs"; do
  [[ ! -e "$root/$path" ]] || fail "$path already exists; choose another name"
done
if grep -rqs --include=Cargo.toml -E "^name *= *\"meshward-$name\"" \
  "$root/shared" "$root/harness" "$root/tests" "$root/filters" "$root/tools"; then
  fail "a crate named meshward-$name already exists; choose another name"
fi
overlay="$root/k8s/overlays/example/kustomization.yaml"
! grep -qE "^    name: $name\$" "$overlay" || fail "k8s/overlays/example already patches a plugin $name"
# A placeholder digest of the right form, distinct per filter, like the others in the overlay.
digest=$(printf 'meshward placeholder %s' "$name" | sha256sum | cut -c1-64)

expand() { # expand <template file>: its text with the names filled in, on stdout
  sed -e "s/__NAME__/$name/g" -e "s/__SNAKE__/$snake/g" -e "s/__DIGEST__/$digest/g" "$1"
}
render() { # render <template file> <destination>
  mkdir -p "$(dirname "$2")"
  expand "$1" >"$2"
}

(cd "$template/crate" && find . -type f | sort) | while read -r file; do
  file=${file#./}
  render "$template/crate/$file" "$root/filters/$name/${file%.tmpl}"
done
render "$template/wasmplugin.yaml" "$root/k8s/base/$name.yaml"
# The base lists its resources; the new WasmPlugin joins them, and the example overlay pins
# its image (make test checks both render, and that every plugin there has a digest).
printf -- '- %s.yaml\n' "$name" >>"$root/k8s/base/kustomization.yaml"
expand "$template/overlay-pin.yaml" >>"$overlay"
# The lists that need an edit, not a new file: the Envoy Gateway policy (in Istio's order)
# and its HTTP overlay, the dashboard and README.md's description of its panels.
wire=$(mktemp -d)
trap 'rm -rf "$wire"' EXIT
expand "$template/envoy-gateway-entry.yaml" >"$wire/entry.yaml"
expand "$template/dashboard-panel.json" >"$wire/panel.json"
python3 "$root/scripts/new_filter_wire.py" "$root" "$name" "$wire/entry.yaml" "$wire/panel.json"
render "$template/envoy.yaml" "$root/envoy-config/$name.yaml"
render "$template/harness-test.rs" "$root/tests/tests/$snake.rs"
render "$template/envoy-test.rs" "$root/tests/tests/envoy_$snake.rs"
# Line breaks depend on the name's length; rustfmt settles them as `make lint` wants.
(cd "$root" && cargo fmt -p "meshward-$name" -p meshward-tests)

cat <<MSG
Created the filter $name:
  filters/$name/               crate meshward-$name (src/config.rs, src/decide.rs,
                               src/metrics.rs, src/lib.rs, README.md)
  tests/tests/$snake.rs        its harness tests
  tests/tests/envoy_$snake.rs  its tests in a real Envoy
  envoy-config/$name.yaml      an Envoy example (checked by tests/tests/envoy_configs.rs)
  k8s/base/$name.yaml          an Istio WasmPlugin, listed in k8s/base/kustomization.yaml
                               and pinned in k8s/overlays/example/kustomization.yaml
  k8s/envoy-gateway/           an entry in the EnvoyExtensionPolicy (base/meshward.yaml)
                               and its module's HTTP source (http/kustomization.yaml)
  k8s/monitoring/              a dashboard row with a first panel, described in README.md
The quick loop (unit tests, harness tests, Envoy tests):
  make build && cargo test -p meshward-$name -p meshward-tests --lib --test $snake --test envoy_$snake
Try it: make run CONFIG=envoy-config/$name.yaml
Then see docs/writing-a-filter.md; make test runs everything.
MSG
