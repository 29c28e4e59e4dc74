#!/usr/bin/env bash
# Builds tests/rls, the Rate Limit Service (limitador on Redis) the Envoy tests run, in
# release, once: the binary is cached outside the clone, keyed by a hash of the project's
# sources, lock file, this script and rustc's version, so later runs and other clones reuse
# it. Prints the binary's path on stdout; build output goes to stderr. `make test` and the
# test rig (tests/src/rls.rs) run it.
#
# limitador 0.11 to 0.14 do not compile with `redis_storage` alone: src/storage/keys.rs
# calls its `bin` module, which sits behind `disk_storage` (RocksDB, a long C++ build that
# also needs libclang), as does `Counter::variables_for_key`, which that module uses. So the
# build uses a copy of the registry's limitador, kept in the cache, with those two `#[cfg]`
# lines removed, patched in with `--config`. The committed
# tests/rls/Cargo.lock is the lock of that patched build.
#
# `scripts/build-rls.sh --test` runs the project's own tests instead (a tonic client against
# the service on a real redis-server), in the same cache.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/tests/rls"
cache=${XDG_CACHE_HOME:-$HOME/.cache}/meshward
hash=$({
  rustc -V
  sha256sum <"$root/scripts/build-rls.sh"
  find Cargo.toml Cargo.lock build.rs src -type f | LC_ALL=C sort | xargs sha256sum
} | sha256sum | cut -c1-16)
bin=$cache/rls-$hash/meshward-rls
if [[ ${1:-} != --test && -x $bin ]]; then
  echo "$bin"
  exit 0
fi

started=$SECONDS
echo "build-rls: building tests/rls into $cache (once; several minutes)" >&2
limitador_version=$(sed -n '/^name = "limitador"$/{n;s/^version = "\(.*\)"$/\1/p}' Cargo.lock)
[[ -n $limitador_version ]] || { echo "build-rls: no limitador in tests/rls/Cargo.lock" >&2; exit 1; }
mkdir -p "$cache"
patched=$cache/limitador-$limitador_version-redis-only
if [[ ! -f $patched/.patched ]]; then
  # Fetch the crate through cargo: a scratch project that depends on exactly this version.
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  mkdir -p "$scratch/src"
  touch "$scratch/src/lib.rs"
  printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nlimitador = { version = "=%s", default-features = false }\n[workspace]\n' \
    "$limitador_version" >"$scratch/Cargo.toml"
  source_dir=$(cd "$scratch" && cargo metadata --format-version 1 2>/dev/null |
    python3 -c 'import json, sys, os.path
print(next(os.path.dirname(p["manifest_path"]) for p in json.load(sys.stdin)["packages"] if p["name"] == "limitador"))')
  rm -rf "$patched.tmp"
  cp -r "$source_dir" "$patched.tmp"
  python3 - "$patched.tmp" <<'PY'
import sys
root = sys.argv[1]
gate = '#[cfg(feature = "disk_storage")]\n'
for file, item in [("src/storage/keys.rs", "pub mod bin {"),
                   ("src/counter.rs", "    pub(crate) fn variables_for_key(")]:
    path = f"{root}/{file}"
    text = open(path).read()
    indent = item[: len(item) - len(item.lstrip())]
    gated = indent + gate + item
    if gated not in text:
        sys.exit(f"build-rls: {file} has no disk_storage gate on {item.strip()!r}: is the patch still needed?")
    open(path, "w").write(text.replace(gated, item, 1))
PY
  touch "$patched.tmp/.patched"
  rm -rf "$patched"
  mv "$patched.tmp" "$patched"
fi

cargo=(env CARGO_TARGET_DIR="$cache/rls-target" cargo)
patch=(--config "patch.crates-io.limitador.path=\"$patched\"")
if [[ ${1:-} == --test ]]; then
  exec "${cargo[@]}" test --release --locked "${patch[@]}"
fi
"${cargo[@]}" build --release --locked "${patch[@]}" >&2
mkdir -p "$cache/rls-$hash"
cp "$cache/rls-target/release/meshward-rls" "$bin.$$"
mv "$bin.$$" "$bin"
echo "build-rls: built $bin in $((SECONDS - started))s" >&2
echo "$bin"
