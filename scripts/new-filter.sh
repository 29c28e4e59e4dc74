#!/usr/bin/env bash
# Creates a new filter from templates/filter/: `scripts/new-filter.sh <name>` (or
# `make new-filter NAME=<name>`) writes filters/<name>/ (the crate meshward-<name>, with a
# config, a pure core, metrics, unit tests and a README), tests/tests/<name_snake>.rs (its
# harness tests, in meshward-tests with the others), k8s/base/<name>.yaml (a WasmPlugin, added to the base's kustomization) and
# envoy-config/<name>.yaml (an Envoy example). In the templates `__NAME__`
# is the name (`hello-probe`) and `__SNAKE__` its snake_case form (`hello_probe`); a file
# ending in `.tmpl` loses that ending. docs/writing-a-filter.md walks through the result.
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
for path in "filters/$name" "k8s/base/$name.yaml" "envoy-config/$name.yaml" "tests/tests/$snake.rs"; do
  [[ ! -e "$root/$path" ]] || fail "$path already exists; choose another name"
done
if grep -rqs --include=Cargo.toml -E "^name *= *\"meshward-$name\"" \
  "$root/shared" "$root/harness" "$root/tests" "$root/filters"; then
  fail "a crate named meshward-$name already exists; choose another name"
fi

render() { # render <template file> <destination>
  mkdir -p "$(dirname "$2")"
  sed -e "s/__NAME__/$name/g" -e "s/__SNAKE__/$snake/g" "$1" >"$2"
}

(cd "$template/crate" && find . -type f | sort) | while read -r file; do
  file=${file#./}
  render "$template/crate/$file" "$root/filters/$name/${file%.tmpl}"
done
render "$template/wasmplugin.yaml" "$root/k8s/base/$name.yaml"
# The base lists its resources; the new WasmPlugin joins them (make test checks what it renders).
printf -- '- %s.yaml\n' "$name" >>"$root/k8s/base/kustomization.yaml"
render "$template/envoy.yaml" "$root/envoy-config/$name.yaml"
render "$template/harness-test.rs" "$root/tests/tests/$snake.rs"
# Line breaks depend on the name's length; rustfmt settles them as `make lint` wants.
(cd "$root" && cargo fmt -p "meshward-$name" -p meshward-tests)

cat <<MSG
Created the filter $name:
  filters/$name/            crate meshward-$name (src/config.rs, src/decide.rs, src/metrics.rs,
                            src/lib.rs, README.md)
  tests/tests/$snake.rs     its harness tests (cargo test -p meshward-tests --test $snake)
  envoy-config/$name.yaml   an Envoy example (checked by tests/tests/envoy_configs.rs)
  k8s/base/$name.yaml       an Istio WasmPlugin, listed in k8s/base/kustomization.yaml
Next: make build && cargo test -p meshward-$name -p meshward-tests --test $snake
Then see docs/writing-a-filter.md.
MSG
