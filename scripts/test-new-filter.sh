#!/usr/bin/env bash
# Proves that `make test` passes right after `make new-filter`, with no hand edits: copies
# the repository's files (tracked and new, not ignored) into a scratch directory, generates
# the filter hello-probe there, and runs every check the new filter touches, as generated:
# the Wasm module (and that `make build` would build it), rustfmt, clippy on host and Wasm,
# its unit tests, its harness tests and its Envoy tests (with the quick-loop command the
# docs give), every test that reads the list of filters or of k8s/base's plugins (Istio's
# WasmPlugins and TrafficExtensions, Envoy Gateway's policy, the dashboard and its README
# lines, the alert rules), and `envoy --mode validate` on its Envoy example (the check
# tests/tests/envoy_configs.rs makes of every file in envoy-config/). It also checks that
# bad names are refused.
# `make test` runs it after the workspace's tests.
#
# It is cheap because it shares this repository's Cargo target directory, where the
# crates.io dependencies are already built. Sharing needs care: Cargo names a workspace
# crate's artifacts by its path relative to the workspace root, so the copy's crates would
# reuse ours (with our paths compiled in, for example the harness's `out/`) or overwrite
# them. The copy therefore gives each of its workspace crates a profile setting of its own
# (line-tables-only debug info), which gives them artifacts of their own and leaves the
# crates.io dependencies shared. The harness tests run in meshward-tests
# (`-p meshward-tests`), whose dependency features match the workspace's, so wasmtime is
# not built again.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
[[ "$target" = /* ]] || target="$root/$target"
envoy="$root/.venv/bin/envoy"
[[ -x "$envoy" ]] || { echo "test-new-filter: $envoy is missing: run make setup" >&2; exit 1; }
name=hello-probe
snake=hello_probe
started=$SECONDS

# Always the same place, inside this checkout's target directory, so two checkouts never
# share a copy. The files get fresh modification times: Cargo does not notice that a crate
# moved, so without that a crate built in an earlier copy elsewhere would count as fresh,
# with that copy's paths compiled in (the harness finds `out/` from its own).
copy="$target/new-filter-check"
rm -rf "$copy"
mkdir -p "$copy"
trap 'rm -rf "$copy"' EXIT
(cd "$root" && git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' file; do [[ -e "$file" ]] && printf '%s\0' "$file"; done |
  tar --null -T - -cf -) | tar -xmf - -C "$copy" # -m: fresh times, so Cargo rebuilds the copy's crates
cd "$copy"
export CARGO_TARGET_DIR="$target"
# The reference CRDs sit beside this checkout (../shared/reference), not beside the copy.
export MESHWARD_REFERENCE_DIR=${MESHWARD_REFERENCE_DIR:-$root/../shared/reference}

step() { echo "--- test-new-filter: $*"; }

# Artifacts of its own for every workspace crate of the copy (see above). A `cdylib`'s
# files carry no hash in their names at all, so the other filters, which meshward-tests
# needs only as libraries, are built as plain `rlib`s here.
isolate() {
  local toml pkg
  for toml in shared/Cargo.toml harness/Cargo.toml harness/fixtures/*/Cargo.toml \
    filters/*/Cargo.toml tests/Cargo.toml; do
    pkg=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$toml" | head -n 1)
    printf '\n[profile.dev.package.%s]\ndebug = "line-tables-only"\n' "$pkg" >>Cargo.toml
    printf '[profile.release.package.%s]\ndebug = "line-tables-only"\n' "$pkg" >>Cargo.toml
    printf '[profile.native.package.%s]\ndebug = "line-tables-only"\n' "$pkg" >>Cargo.toml
    if [[ "$toml" != "filters/$name/Cargo.toml" ]]; then
      sed -i 's/^crate-type = \["cdylib", "rlib"\]/crate-type = ["rlib"]/' "$toml"
    fi
  done
}

step "bad names are refused"
listing() { find filters k8s envoy-config tests/tests | sort; }
before=$(listing)
for bad in Hello-Probe hello_probe -hello hello--probe 9lives security-headers shared ""; do
  if scripts/new-filter.sh "$bad" >/dev/null 2>&1; then
    echo "test-new-filter: new-filter accepted the name \"$bad\"" >&2
    exit 1
  fi
done
[[ "$(listing)" == "$before" ]] || { echo "test-new-filter: a refused name left files" >&2; exit 1; }

step "make new-filter NAME=$name"
make --no-print-directory new-filter NAME=$name
if make --no-print-directory new-filter NAME=$name >/dev/null 2>&1; then
  echo "test-new-filter: new-filter overwrote the existing $name" >&2
  exit 1
fi
# Not `make -n build | grep -q`: grep -q stops reading at the first match, make then dies of
# SIGPIPE, and pipefail turns that into a failure.
build_plan=$(make --no-print-directory -n build)
grep -q -- "-p meshward-$name" <<<"$build_plan" ||
  { echo "test-new-filter: make build does not build meshward-$name" >&2; exit 1; }

isolate

step "build out/$name.wasm"
cargo build --quiet --release --target wasm32-wasip1 -p meshward-$name

# make build also builds every filter as an Envoy dynamic module (out/<name>.so).
step "build out/$name.so (native)"
cargo build --quiet --profile native --target x86_64-unknown-linux-gnu \
  --features meshward-shared/native -p meshward-$name
[[ -f "$target/x86_64-unknown-linux-gnu/native/libmeshward_$snake.so" ]] ||
  { echo "test-new-filter: no libmeshward_$snake.so" >&2; exit 1; }

# The checks need every filter's module, Envoy and the schema validator: this checkout's.
mkdir -p out
cp "$root"/out/*.wasm out/
cp "$target/wasm32-wasip1/release/meshward_$snake.wasm" "out/$name.wasm"
cp "$root"/out/*.so out/
cp "$target/x86_64-unknown-linux-gnu/native/libmeshward_$snake.so" "out/$name.so"
ln -s "$root/.venv" .venv
ln -s "$root/k8s/check/node_modules" k8s/check/node_modules

step "lint"
cargo fmt --all --check
cargo clippy --quiet -p meshward-$name --all-targets -- -D warnings
cargo clippy --quiet --target wasm32-wasip1 -p meshward-$name -- -D warnings
cargo clippy --quiet -p meshward-tests --test $snake --test envoy_$snake -- -D warnings

step "lint: tests may unwrap (clippy.toml), the filter may not"
decide="filters/$name/src/decide.rs"
cp "$decide" "$decide.orig"
printf '\n#[cfg(test)]\nmod lint_probe {\n    #[test]\n    fn may_unwrap() {\n        let digits: Vec<u32> = "12".chars().filter_map(|c| c.to_digit(10)).collect();\n        assert_eq!(digits[0], \"1\".parse::<u32>().unwrap());\n    }\n}\n' >>"$decide"
cargo clippy --quiet -p meshward-$name --all-targets -- -D warnings
printf '\n/// Not allowed.\npub fn lint_probe(value: Option<u8>) -> u8 {\n    value.unwrap()\n}\n' >>"$decide"
if lint=$(cargo clippy --quiet -p meshward-$name --all-targets -- -D warnings 2>&1); then
  echo "test-new-filter: clippy let an unwrap outside the tests through" >&2
  exit 1
fi
grep -q "clippy::unwrap.used" <<<"$lint" ||
  { echo "test-new-filter: clippy failed, but not on unwrap_used:" >&2; echo "$lint" >&2; exit 1; }
mv "$decide.orig" "$decide"

step "unit, harness and Envoy tests (the quick loop of docs/writing-a-filter.md)"
cargo test --quiet -p meshward-$name -p meshward-tests --lib --test $snake --test envoy_$snake

step "k8s/ and monitoring: Istio's and Envoy Gateway's schemas, the chain order, the pins, every config in the harness and Envoy, the dashboard"
cargo test --quiet -p meshward-tests --test wasmplugins --test trafficextensions --test envoy_gateway \
  --test envoy_gateway_native --test monitoring_dashboard --test monitoring_rules

# What tests/tests/envoy_configs.rs does with each file in envoy-config/; the others are
# unchanged here and the workspace's run has checked them.
step "envoy --mode validate -c envoy-config/$name.yaml"
"$envoy" --mode validate --disable-hot-restart --log-level warn -c "envoy-config/$name.yaml"

step "ok in $((SECONDS - started))s"
