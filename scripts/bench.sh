#!/usr/bin/env bash
# Envoy's CPU time per request and throughput for each filter configuration, as ratios
# measured in the same run, plus the harness's Wasm fuel per request. Method: BENCHMARKS.md.
#
# Usage: scripts/bench.sh   (from `make bench`, after `make build` and `make setup`)
# Two sizes: the default is quick (the QUICK rows, 3 rounds of 5 s: about 12 minutes; it
# prints its tables and leaves BENCHMARKS.md alone); BENCH_FULL=1 runs every row, the price
# list (the cost-* rows) and the drills, 3 rounds of 10 s (about 40 minutes), and records
# the results in BENCHMARKS.md.
# Knobs, all optional: BENCH_FULL=1, BENCH_DURATION (seconds measured per run: 5 quick, 10
# full), BENCH_WARMUP (1 quick, 2 full), BENCH_ROUNDS=3, BENCH_CONNECTIONS=32,
# BENCH_ENVOY_CPU=0, BENCH_LOAD_CPU=1,
# BENCH_ONLY="no-filter security-headers" (a subset, in either size; keep the baselines in it
# for ratios; it may also name the OPTIONAL_CONFIGS, which run only when named),
# BENCH_RECORD=0/1 (rewrite the results in BENCHMARKS.md; 1 in full runs, 0 in quick ones),
# ENVOY=path/to/envoy, BENCH_UPSTREAM=path/to/server (another upstream; it must take
# `--port PORT`).
set -euo pipefail
cd "$(dirname "$0")/.."

# The configurations, one a line: a name and its Envoy config; a Wasm filter adds its module
# and the plugin configuration (the rest of the line) for the fuel measurement, as JSON or
# as @FILE for the plugin configuration in that Envoy config.
CONFIGS=(
  "no-filter        envoy-config/bench/no-filter.yaml"
  "noop-wasm        envoy-config/bench/noop-wasm.yaml        out/fixture-noop.wasm     {}"
  "security-headers envoy-config/bench/security-headers.yaml out/security-headers.wasm {}"
  "header-mutation  envoy-config/bench/header-mutation.yaml"
  "circuit-metrics  envoy-config/bench/circuit-metrics.yaml  out/circuit-metrics.wasm  {\"breakers\": [{\"cluster\": \"upstream\"}]}"
  "region-router    envoy-config/bench/region-router.yaml    out/region-router.wasm    {\"regions\": [{\"name\": \"eu-west-1\", \"cluster\": \"region-eu-west-1\"}, {\"name\": \"us-east-1\", \"cluster\": \"region-us-east-1\"}, {\"name\": \"ap-south-1\", \"cluster\": \"region-ap-south-1\"}], \"local_region\": \"eu-west-1\"}"
  "rate-limit       envoy-config/bench/rate-limit.yaml       out/rate-limit.wasm       {\"rules\": [{\"name\": \"bench\", \"key\": [{\"header\": \"x-client\"}], \"buckets\": 32768, \"limit\": {\"capacity\": 1000000, \"refill\": 1, \"per\": \"1h\"}}]}"
  "rate-limit-10k-keys envoy-config/bench/rate-limit.yaml out/rate-limit.wasm @envoy-config/bench/rate-limit.yaml"
  "local-ratelimit  envoy-config/bench/local-ratelimit.yaml"
  # rate-limit's rule asking the Rate Limit Service too (tests/rls on redis-server, started
  # by start_rls); no fuel row, as the harness has no service to answer.
  "rate-limit-global envoy-config/bench/rate-limit-global.yaml"
  "local-ratelimit-10k-keys envoy-config/bench/local-ratelimit.yaml"
  "jwt-auth-rs256-one   envoy-config/bench/jwt-auth.yaml   out/jwt-auth.wasm @envoy-config/bench/jwt-auth.yaml"
  "jwt-authn-rs256-one  envoy-config/bench/jwt-authn.yaml"
  "jwt-auth-rs256-many  envoy-config/bench/jwt-auth.yaml   out/jwt-auth.wasm @envoy-config/bench/jwt-auth.yaml"
  "jwt-authn-rs256-many envoy-config/bench/jwt-authn.yaml"
  "jwt-auth-es256-one   envoy-config/bench/jwt-auth.yaml   out/jwt-auth.wasm @envoy-config/bench/jwt-auth.yaml"
  "jwt-authn-es256-one  envoy-config/bench/jwt-authn.yaml"
  "jwt-auth-es256-many  envoy-config/bench/jwt-auth.yaml   out/jwt-auth.wasm @envoy-config/bench/jwt-auth.yaml"
  "jwt-authn-es256-many envoy-config/bench/jwt-authn.yaml"
  # All five filters with one ES256 token: as five Wasm filters, as the meshward chain (one
  # Wasm filter), and Envoy's native filters for three of the jobs; no fuel row for the
  # five, as the harness runs one module.
  "five-filters     envoy-config/bench/five-filters.yaml"
  "chain            envoy-config/bench/chain.yaml            out/chain.wasm @envoy-config/bench/chain.yaml"
  "native-three     envoy-config/bench/native-three.yaml"
  # The native build (Envoy dynamic modules, out/<name>.so: docs/native.md) of each filter
  # and the chain, with the Wasm row's configuration (envoy-config/bench/native-*.yaml); no
  # fuel row, as the harness runs only Wasm. Compare each with its Wasm row and with Envoy's
  # own filter for the job (header-mutation, local-ratelimit, jwt-authn-rs256-one).
  "security-headers.so envoy-config/bench/native-security-headers.yaml"
  "circuit-metrics.so  envoy-config/bench/native-circuit-metrics.yaml"
  "region-router.so    envoy-config/bench/native-region-router.yaml"
  "rate-limit.so       envoy-config/bench/native-rate-limit.yaml"
  "jwt-auth-rs256-one.so envoy-config/bench/native-jwt-auth.yaml"
  "chain.so            envoy-config/bench/native-chain.yaml"
)
# The price list, full runs only: the cost fixture (harness/fixtures/cost) making a number of
# calls of one kind per request, each row with its counts as the fixture's configuration
# (written into bench-results/cost-NAME.yaml from envoy-config/bench/cost.yaml). A call's
# price is its row's Envoy CPU time over cost-floor, divided by the count (less the calls
# of kinds priced by an earlier row); scripts/bench_report.py works them out and predicts
# each filter's cost from its host calls (BENCHMARKS.md, "Cost model").
COST_ROWS=(
  "cost-floor"
  "cost-get-header-value get_header_value=20"
  "cost-get-pairs        get_pairs=10"
  "cost-get-property     get_property=20"
  "cost-get-shared-data  get_shared_data=20"
  "cost-shared-data      shared_data=10"
  "cost-increment-metric increment_metric=40"
  "cost-record-metric    record_metric=40"
  "cost-current-time     current_time=40"
  "cost-clear-route-cache clear_route_cache=10"
  "cost-replace-value    replace_value=20"
  "cost-add-value        add_value=20"
  "cost-remove-value     remove_value=20"
  "cost-set-pairs        set_pairs=10"
)
# The quick default's rows: the baselines and each filter's main row with its native peer.
QUICK=(no-filter noop-wasm security-headers header-mutation circuit-metrics region-router
  rate-limit local-ratelimit jwt-auth-rs256-one jwt-authn-rs256-one security-headers.so
  circuit-metrics.so region-router.so rate-limit.so jwt-auth-rs256-one.so)
# Configurations that run only when BENCH_ONLY names them: jwt-auth checking signatures in
# Wasm ("host_crypto": false), up to 25 times Envoy's CPU per new token; and its worst case,
# a PS512 token of an 8192-bit key checked in Wasm on every request.
OPTIONAL_CONFIGS=(
  "jwt-auth-ps512-8192 envoy-config/bench/jwt-auth-ps512-8192.yaml out/jwt-auth.wasm @envoy-config/bench/jwt-auth-ps512-8192.yaml"
  "jwt-auth-wasm-crypto-rs256-many envoy-config/bench/jwt-auth-wasm-crypto.yaml out/jwt-auth.wasm @envoy-config/bench/jwt-auth-wasm-crypto.yaml"
  "jwt-auth-wasm-crypto-es256-many envoy-config/bench/jwt-auth-wasm-crypto.yaml out/jwt-auth.wasm @envoy-config/bench/jwt-auth-wasm-crypto.yaml"
)
BASELINE=no-filter  # ratios "x no-filter" divide by this one
WASM_FLOOR=noop-wasm # ratios "x noop-wasm" divide by this one
# Configurations doing the same job: they must send the same response headers, or comparing
# them says nothing.
SAME_JOB=(security-headers header-mutation security-headers.so)
# Configurations loaded with a request script of their own (wrk's `request` hook, run with
# the report script): the *-10k-keys runs send one of 10,000 `x-client` values per request.
declare -A REQUEST_SCRIPTS=(
  [rate-limit-10k-keys]=scripts/wrk/keys-10k.lua
  [local-ratelimit-10k-keys]=scripts/wrk/keys-10k.lua
)
# Configurations sent bearer tokens: the algorithm and how many distinct tokens. Each run of
# the bench signs them (tests/tools/bench_tokens.py) into $OUT/tokens-ALG-COUNT.txt; the
# load sends them in turn with scripts/wrk/jwt-tokens.lua, and every other request
# (the readiness probe, the recorded headers, the fuel measurement) carries the first one.
# 4000 is well above the 1024 tokens both jwt filters cache, so every request misses.
declare -A TOKENS=(
  [jwt-auth-rs256-one]="RS256 1"
  [jwt-auth-rs256-one.so]="RS256 1"
  [jwt-authn-rs256-one]="RS256 1"
  [jwt-auth-rs256-many]="RS256 4000"
  [jwt-authn-rs256-many]="RS256 4000"
  [jwt-auth-es256-one]="ES256 1"
  [jwt-authn-es256-one]="ES256 1"
  [jwt-auth-es256-many]="ES256 4000"
  [jwt-authn-es256-many]="ES256 4000"
  [jwt-auth-wasm-crypto-rs256-many]="RS256 4000"
  [jwt-auth-wasm-crypto-es256-many]="ES256 4000"
  [jwt-auth-ps512-8192]="PS512 1"
  [five-filters]="ES256 1"
  [chain]="ES256 1"
  [chain.so]="ES256 1"
  [native-three]="ES256 1"
)
TOKENS_SCRIPT=scripts/wrk/jwt-tokens.lua
# Configurations whose fuel is measured with this many distinct `x-client` values, as
# scripts/wrk/keys-10k.lua sends them.
declare -A CLIENTS=(
  [rate-limit-10k-keys]=10000
)

# The ports every envoy-config/bench/*.yaml uses.
LISTENER_PORT=19080
ADMIN_PORT=19901
UPSTREAM_PORT=19081

FULL=${BENCH_FULL:-0}
if [ "$FULL" = 1 ]; then
  DURATION=${BENCH_DURATION:-10}
  WARMUP=${BENCH_WARMUP:-2}
  RECORD=${BENCH_RECORD:-1}
else
  DURATION=${BENCH_DURATION:-5}
  WARMUP=${BENCH_WARMUP:-1}
  RECORD=${BENCH_RECORD:-0}
fi
ROUNDS=${BENCH_ROUNDS:-3}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
ENVOY_CPU=${BENCH_ENVOY_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
ONLY=${BENCH_ONLY:-}
OUT=bench-results
UPSTREAM_BIN=${BENCH_UPSTREAM:-target/release/meshward-echo}

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 1; }

# The load tools come from Debian; a fresh machine gets them here.
ensure_tools() {
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v curl >/dev/null || missing+=(curl)
  command -v taskset >/dev/null || missing+=(util-linux)
  command -v python3 >/dev/null || missing+=(python3)
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

find_envoy() {
  if [ -n "${ENVOY:-}" ]; then :
  elif [ -x .venv/bin/envoy ]; then ENVOY=.venv/bin/envoy
  elif command -v envoy >/dev/null; then ENVOY=$(command -v envoy)
  else die "no Envoy: run 'make setup' (or set ENVOY=path/to/envoy)"
  fi
}

# The configuration lines of the cost rows: the name, the config written for it, the
# fixture and its counts.
cost_configs() {
  local row name counts
  for row in "${COST_ROWS[@]}"; do
    read -r name counts <<<"$row"
    if [ -z "$counts" ]; then
      echo "$name envoy-config/bench/cost.yaml out/fixture-cost.wasm"
    else
      echo "$name $OUT/$name.yaml out/fixture-cost.wasm $counts"
    fi
  done
}

# Writes the Envoy config of each selected cost row.
make_cost_configs() {
  local line name config _wasm counts
  for line in "${SELECTED[@]}"; do
    read -r name config _wasm counts <<<"$line"
    [[ "$name" == cost-* && "$config" == "$OUT/"* ]] || continue
    sed "s/value: ''/value: '$counts'/" envoy-config/bench/cost.yaml >"$config"
  done
}

# The configuration lines to run, into SELECTED: BENCH_ONLY's, else every row (full) or the
# QUICK rows.
select_configs() {
  local line name all=("${CONFIGS[@]}")
  mapfile -t -O "${#all[@]}" all < <(cost_configs)
  SELECTED=()
  for line in "${all[@]}"; do
    read -r name _ <<<"$line"
    if [ -n "$ONLY" ]; then
      [[ " $ONLY " == *" $name "* ]] && SELECTED+=("$line")
    elif [ "$FULL" = 1 ] || [[ " ${QUICK[*]} " == *" $name "* ]]; then
      SELECTED+=("$line")
    fi
  done
  for line in "${OPTIONAL_CONFIGS[@]}"; do
    read -r name _ <<<"$line"
    if [[ " $ONLY " == *" $name "* ]]; then SELECTED+=("$line"); fi
  done
  [ ${#SELECTED[@]} -gt 0 ] || die "BENCH_ONLY=\"$ONLY\" names no configuration"
}

# The token file of a configuration in TOKENS.
token_file() {
  local alg count
  read -r alg count <<<"${TOKENS[$1]}"
  echo "$OUT/tokens-$alg-$count.txt"
}

# Signs the token files the selected configurations use, fresh in each run (they expire).
make_tokens() {
  local line name file alg count made=" "
  for line in "${SELECTED[@]}"; do
    read -r name _ <<<"$line"
    [ -n "${TOKENS[$name]:-}" ] || continue
    file=$(token_file "$name")
    [[ "$made" != *" $file "* ]] || continue
    [ -x .venv/bin/python ] || die "$name: no .venv/bin/python to sign its tokens; run 'make setup'"
    read -r alg count <<<"${TOKENS[$name]}"
    log "signing $count $alg tokens into $file"
    .venv/bin/python tests/tools/bench_tokens.py "$alg" "$count" "$file" ||
      die "$name: tests/tools/bench_tokens.py failed (PyJWT comes with 'make setup')"
    made+="$file "
  done
}

# curl's arguments for the requests a configuration takes: the first of its tokens, if any.
curl_auth() {
  [ -n "${TOKENS[$1]:-}" ] || return 0
  printf '%s\n' -H "authorization: Bearer $(head -n 1 "$(token_file "$1")")"
}

port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
  local i
  for i in $(seq 100); do
    port_is_free "$1" || return 0
    sleep 0.1
  done
  return 1
}

# utime + stime of a process, in clock ticks. Field 2 (comm) may hold spaces, so fields
# are counted after its closing parenthesis: utime and stime are then the 12th and 13th.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

# Busy and total clock ticks of one core so far, all processes together: user to steal
# (guest time is already counted in user), less idle and iowait.
core_ticks() {
  awk -v cpu="cpu$1" '$1 == cpu { total = 0; for (i = 2; i <= 9; i++) total += $i;
    print total - $5 - $6, total }' /proc/stat
}

stop() {
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  wait "$pid" 2>/dev/null || true
}

UPSTREAM_PID=""
ENVOY_PID=""
cleanup() {
  [ -z "$ENVOY_PID" ] || stop "$ENVOY_PID"
  [ -z "$UPSTREAM_PID" ] || stop "$UPSTREAM_PID"
  [ -z "$RLS_PID" ] || stop "$RLS_PID"
  [ -z "$REDIS_PID" ] || stop "$REDIS_PID"
}
trap cleanup EXIT

start_upstream() {
  [ -n "${BENCH_UPSTREAM:-}" ] || cargo build --release -q -p meshward-tests --bin meshward-echo
  port_is_free "$UPSTREAM_PORT" || die "port $UPSTREAM_PORT is taken; the bench upstream needs it"
  taskset -c "$LOAD_CPU" "$UPSTREAM_BIN" --port "$UPSTREAM_PORT" >"$OUT/upstream.log" 2>&1 &
  UPSTREAM_PID=$!
  wait_for_port "$UPSTREAM_PORT" || die "the upstream did not listen on $UPSTREAM_PORT; see $OUT/upstream.log"
}

start_envoy() {
  local name=$1 config=$2
  port_is_free "$LISTENER_PORT" || die "port $LISTENER_PORT is taken; the bench Envoy needs it"
  taskset -c "$ENVOY_CPU" "$ENVOY" -c "$config" --concurrency 1 --disable-hot-restart \
    --log-level warn >"$OUT/envoy-$name.log" 2>&1 &
  ENVOY_PID=$!
  local i auth
  mapfile -t auth < <(curl_auth "$name")
  for i in $(seq 300); do
    if curl -fs -o /dev/null "http://127.0.0.1:$ADMIN_PORT/ready" &&
      curl -fs -o /dev/null "${auth[@]}" "http://127.0.0.1:$LISTENER_PORT/"; then
      return 0
    fi
    kill -0 "$ENVOY_PID" 2>/dev/null || break
    sleep 0.1
  done
  die "Envoy did not serve $name; see $OUT/envoy-$name.log"
}

# wrk's summary on one line, through its Lua `done` hook: "result", requests, duration (µs),
# failed or non-2xx/3xx requests, latency p50 and p99 (µs).
write_wrk_report_script() {
  cat >"$OUT/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "result %d %d %d %d %d\n",
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
EOF
}

load() {
  local seconds=$1 name=$2 script="$OUT/report.lua" request_script tokens=""
  request_script=${REQUEST_SCRIPTS[$name]:-}
  if [ -n "${TOKENS[$name]:-}" ]; then
    request_script=$TOKENS_SCRIPT
    tokens=$(token_file "$name")
  fi
  if [ -n "$request_script" ]; then
    script="$OUT/wrk-$name.lua"
    cat "$request_script" "$OUT/report.lua" >"$script"
  fi
  JWT_TOKENS=$tokens taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"$seconds"s \
    -s "$script" "http://127.0.0.1:$LISTENER_PORT/"
}

# The response headers a configuration sends, less the ones that change per response.
response_headers() {
  local auth
  mapfile -t auth < <(curl_auth "$1")
  curl -fsS -D - -o /dev/null "${auth[@]}" "http://127.0.0.1:$LISTENER_PORT/" | tr -d '\r' |
    grep -viE '^(date|x-envoy-upstream-service-time):' | sed '/^$/d' | sort
}

# Ticks so far: Envoy's and the upstream's, then the busy and all ticks of Envoy's core and
# of the load core (every process on them).
sample() {
  echo "$(cpu_ticks "$ENVOY_PID") $(cpu_ticks "$UPSTREAM_PID")" \
    "$(core_ticks "$ENVOY_CPU") $(core_ticks "$LOAD_CPU")"
}

# One measured run: the ticks above, around a fixed-duration load after a warm-up.
run() {
  local round=$1 name=$2 config=$3
  start_envoy "$name" "$config"
  [ "$round" -gt 1 ] || response_headers "$name" >"$OUT/headers-$name.txt"
  load "$WARMUP" "$name" >/dev/null
  local before after result
  read -ra before <<<"$(sample)"
  result=$(load "$DURATION" "$name" | grep '^result ')
  read -ra after <<<"$(sample)"
  stop "$ENVOY_PID"
  ENVOY_PID=""
  local requests duration_us errors p50_us p99_us
  read -r _ requests duration_us errors p50_us p99_us <<<"$result"
  [ "$errors" -eq 0 ] || die "$name: $errors failed requests in round $round"
  local fields=("$round" "$name" "$requests" "$duration_us" "$p50_us" "$p99_us") i
  for i in "${!before[@]}"; do fields+=("$((after[i] - before[i]))"); done
  (IFS=$'\t'; echo "${fields[*]}") >>"$OUT/runs.tsv"
  log "round $round $name: $requests requests, Envoy ${fields[6]} ticks"
}

# The harness's fuel and host calls per request for every selected Wasm filter.
fuel() {
  local args=() line name wasm config
  for line in "${SELECTED[@]}"; do
    read -r name _ wasm config <<<"$line"
    [ -n "$wasm" ] || continue
    args+=("$name" "$wasm" "$config")
    [ -z "${TOKENS[$name]:-}" ] || args+=(--tokens "$(token_file "$name")")
    [ -z "${CLIENTS[$name]:-}" ] || args+=(--clients "${CLIENTS[$name]}")
  done
  : >"$OUT/fuel.tsv"
  [ ${#args[@]} -eq 0 ] ||
    cargo run -q -p meshward-tests --bin meshward-fuel -- "${args[@]}" >"$OUT/fuel.tsv"
}

check_same_job() {
  local first="" name
  for name in "${SAME_JOB[@]}"; do
    [ -f "$OUT/headers-$name.txt" ] || continue
    if [ -z "$first" ]; then first=$name; continue; fi
    diff -u "$OUT/headers-$first.txt" "$OUT/headers-$name.txt" >&2 ||
      die "$first and $name send different headers, so they do not do the same job"
  done
}

# Global rate limiting: the test Rate Limit Service (tests/rls: limitador counting in
# redis-server; scripts/build-rls.sh builds it once and caches it), pinned to the load core
# like the upstream, since it is the far side of the call and not Envoy's work.
RLS_PORT=19082
REDIS_PORT=19379
RLS_PID=""
REDIS_PID=""

start_rls() {
  printf '%s\n' "${SELECTED[@]}" | grep -q '^rate-limit-global ' || return 0
  command -v redis-server >/dev/null || die "rate-limit-global needs redis-server: run 'make setup'"
  local bin
  bin=$(scripts/build-rls.sh) || die "rate-limit-global: scripts/build-rls.sh failed"
  port_is_free "$REDIS_PORT" || die "port $REDIS_PORT is taken; the bench's redis-server needs it"
  port_is_free "$RLS_PORT" || die "port $RLS_PORT is taken; the bench's Rate Limit Service needs it"
  taskset -c "$LOAD_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" \
    --appendonly no --dir "$OUT" >"$OUT/redis.log" 2>&1 &
  REDIS_PID=$!
  wait_for_port "$REDIS_PORT" || die "redis-server did not listen on $REDIS_PORT; see $OUT/redis.log"
  # One count per x-client value, far above what any run sends: the service never refuses.
  cat >"$OUT/rls-limits.yaml" <<'EOF'
- namespace: meshward-bench
  name: bench
  max_value: 1000000000000
  seconds: 3600
  conditions: ["descriptors[0].rule == 'bench'"]
  variables: ["descriptors[0]['x-client']"]
EOF
  taskset -c "$LOAD_CPU" "$bin" --listen "127.0.0.1:$RLS_PORT" \
    --redis "redis://127.0.0.1:$REDIS_PORT" --limits "$OUT/rls-limits.yaml" >"$OUT/rls.log" 2>&1 &
  RLS_PID=$!
  wait_for_port "$RLS_PORT" || die "the Rate Limit Service did not listen on $RLS_PORT; see $OUT/rls.log"
}

# The service's calls so far, from the tally it prints on SIGUSR1.
rls_calls() {
  local before i
  before=$(grep -c '^calls=' "$OUT/rls.log" || true)
  kill -USR1 "$RLS_PID"
  for i in $(seq 50); do
    [ "$(grep -c '^calls=' "$OUT/rls.log" || true)" -gt "$before" ] && break
    sleep 0.1
  done
  grep '^calls=' "$OUT/rls.log" | tail -n 1 | sed 's/^calls=\([0-9]*\).*/\1/'
}

# The global drill: per configuration, the requests one load of BENCH_DURATION sent and the
# calls the service counted meanwhile: rate-limit-global (every request should call) and
# rate-limit-global-share (a local bucket of 1,000 a second in front: only what it allows
# calls); with the CPU runs' latency medians of rate-limit and rate-limit-global, what the
# call adds. Recorded in BENCHMARKS.md between the rate-limit-global markers.
global_drill() {
  [ -n "$RLS_PID" ] || return 0
  log "rate-limit-global drill"
  local name before after result requests errors rows=""
  for name in rate-limit-global rate-limit-global-share; do
    start_envoy "$name" "envoy-config/bench/$name.yaml"
    before=$(rls_calls)
    result=$(load "$DURATION" "$name" | grep '^result ')
    after=$(rls_calls)
    stop "$ENVOY_PID"
    ENVOY_PID=""
    read -r _ requests _ errors _ _ <<<"$result"
    rows+="$name $requests $errors $((after - before))"$'\n'
  done
  python3 - "$OUT" "$DURATION" "$CONNECTIONS" "$rows" "$@" <<'PY' | tee "$OUT/global.md"
import statistics, sys
out, duration, connections, rows, record = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
latency = {}
for line in open(f"{out}/runs.tsv"):
    f = line.rstrip("\n").split("\t")
    latency.setdefault(f[1], []).append((int(f[4]) / 1000, int(f[5]) / 1000))
md = []
names = ("rate-limit", "rate-limit-global")
if all(n in latency for n in names):
    med = {n: [statistics.median(x[i] for x in latency[n]) for i in (0, 1)] for n in names}
    md += ["| latency, median over rounds | p50 ms | p99 ms |", "|---|---|---|"]
    md += [f"| {n} | {med[n][0]:.2f} | {med[n][1]:.2f} |" for n in names]
    added = [med[names[1]][i] - med[names[0]][i] for i in (0, 1)]
    md += [f"| added by the call to the service | {added[0]:+.2f} | {added[1]:+.2f} |", ""]
md += ["| configuration | requests | refused | calls to the service | share of requests |",
       "|---|---|---|---|---|"]
for row in filter(None, rows.split("\n")):
    name, requests, refused, calls = row.split()
    share = int(calls) / max(int(requests), 1)
    md.append(f"| {name} | {requests} | {refused} | {calls} | {share:.1%} |")
md += ["", f"One load of {duration} s per configuration, {connections} connections, no "
       "`x-client` (one key), after the CPU runs."]
text = "\n".join(md)
print(text)
if record:
    path = record[1]
    start, end = "<!-- rate-limit-global:start -->", "<!-- rate-limit-global:end -->"
    doc = open(path).read()
    if start not in doc or end not in doc:
        sys.exit(f"{path}: no {start} ... {end} markers")
    head, rest = doc.split(start, 1)
    open(path, "w").write(head + start + "\n" + text + "\n" + end + rest.split(end, 1)[1])
PY
}

main() {
  ensure_tools
  find_envoy
  mkdir -p "$OUT"
  : >"$OUT/runs.tsv"
  write_wrk_report_script
  local cpus
  cpus=$(nproc)
  [ "$cpus" -ge 2 ] || die "needs 2 cores to keep Envoy and the load apart; this machine has $cpus"
  select_configs
  make_cost_configs
  local line name config wasm
  for line in "${SELECTED[@]}"; do
    read -r name config wasm _ <<<"$line"
    [ -f "$config" ] || die "$name: no $config"
    [ -z "$wasm" ] || [ -f "$wasm" ] || die "$name: no $wasm; run 'make build'"
  done
  cat >"$OUT/run.env" <<EOF
date=$(date -u +%Y-%m-%dT%H:%MZ)
commit=$(git describe --always --dirty 2>/dev/null || echo unknown)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
cores=$cpus
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
envoy=$("$ENVOY" --version | sed -n 's/.*version: [^/]*\/\([^/]*\)\/.*/\1/p')
size=$([ "$FULL" = 1 ] && echo full || echo quick)
duration=$DURATION
warmup=$WARMUP
rounds=$ROUNDS
connections=$CONNECTIONS
clk_tck=$(getconf CLK_TCK)
EOF
  make_tokens
  fuel
  start_upstream
  start_rls
  local round
  for round in $(seq "$ROUNDS"); do
    for line in "${SELECTED[@]}"; do
      read -r name config _ <<<"$line"
      run "$round" "$name" "$config"
    done
    [ "$round" -gt 1 ] || check_same_job
  done
  echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/run.env"
  local record=()
  [ "$RECORD" = 0 ] || record=(--record BENCHMARKS.md)
  python3 scripts/bench_report.py "$OUT" "$BASELINE" "$WASM_FLOOR" "${record[@]}" |
    tee "$OUT/latest.md"
  # region-router's failover drill (tests/src/bin/meshward-failover.rs): failures and times
  # around a region that stops mid-load, in its own section of BENCHMARKS.md.
  if [ "$FULL" = 1 ] && printf '%s\n' "${SELECTED[@]}" | grep -q '^region-router '; then
    log "region-router failover drill"
    cargo run -q -p meshward-tests --bin meshward-failover -- "${record[@]}" |
      tee "$OUT/failover.md"
  fi
  global_drill "${record[@]}"
}

main "$@"
