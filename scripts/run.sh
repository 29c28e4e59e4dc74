#!/usr/bin/env bash
# `make run [CONFIG=envoy-config/<name>.yaml]`: Envoy with the config (envoy-config/meshward.yaml
# unless given) on 127.0.0.1:10000 (admin 9901), and an echo upstream on each port from 8080
# to 8089 the config names (8080 at least), with a few curl lines to try. Ctrl-C stops them.
# Expects `make setup` and `make build` to have run (`make run` does both first).
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=${1:-envoy-config/meshward.yaml}
ENVOY=.venv/bin/envoy
LOG_DIR=${RUN_LOG_DIR:-$(mktemp -d -t meshward-run.XXXXXX)}

[[ -f $CONFIG ]] || { echo "run: no config $CONFIG (give CONFIG=envoy-config/<name>.yaml)" >&2; exit 1; }
[[ -x $ENVOY ]] || { echo "run: $ENVOY not found: run \`make setup\` first" >&2; exit 1; }
# The upstreams the config expects on the echo server's ports (the example configs use 8080 on).
mapfile -t upstream_ports < <( (echo 8080; grep -o 'port_value: *80[89][0-9]' "$CONFIG" | grep -o '[0-9]*$') |
  awk '$1 >= 8080 && $1 <= 8089' | sort -un)
for port in "${upstream_ports[@]}" 9901 10000; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "run: 127.0.0.1:$port is already in use (another \`make run\`?)" >&2
    exit 1
  fi
done

cargo build -p meshward-tests --bin meshward-echo

pids=()
stop() {
  trap - EXIT INT TERM
  ((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null
  wait 2>/dev/null
  echo
  echo "Stopped. Logs: $LOG_DIR"
}
trap stop EXIT
trap 'exit 130' INT TERM

for port in "${upstream_ports[@]}"; do
  "${CARGO_TARGET_DIR:-target}/debug/meshward-echo" --port "$port" >"$LOG_DIR/echo-$port.log" 2>&1 &
  pids+=($!)
done
"$ENVOY" -c "$CONFIG" --concurrency 2 --disable-hot-restart >"$LOG_DIR/envoy.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 300); do
  if [[ $(curl -s http://127.0.0.1:9901/ready 2>/dev/null) == LIVE ]]; then
    break
  fi
  if ! kill -0 "${pids[@]}" 2>/dev/null; then
    echo "run: Envoy or the echo server exited; the end of their logs:" >&2
    tail -n 20 "$LOG_DIR"/*.log >&2
    exit 1
  fi
  sleep 0.1
done
[[ $(curl -s http://127.0.0.1:9901/ready) == LIVE ]] || {
  echo "run: Envoy was not ready after 30s; see $LOG_DIR/envoy.log" >&2
  exit 1
}

if [[ $CONFIG != envoy-config/meshward.yaml ]]; then
  cat <<EOF
Envoy is running $CONFIG on http://127.0.0.1:10000 (admin http://127.0.0.1:9901),
in front of an echo server on 127.0.0.1 port ${upstream_ports[*]}, which answers with what it received.
Logs: $LOG_DIR

What the config says about itself:
EOF
  # The config's opening comment, which says what it does and what to try.
  sed -n '/^#/!q; s/^# \{0,1\}/  /p' "$CONFIG"
  cat <<EOF

  # what the filters report (meshward_* names, with labels)
  curl -s http://127.0.0.1:9901/stats/prometheus | grep '^meshward_'

Ctrl-C stops them.
EOF
else
# The demo token of $CONFIG's jwt-auth (ES256, sub demo-user, scope "read", valid until 2100).
DEMO_TOKEN=$(sed -n 's/^ *# *TOKEN=//p' "$CONFIG" | head -n 1)
cat <<EOF
meshward is running: Envoy on http://127.0.0.1:10000 (admin http://127.0.0.1:9901),
in front of an echo server on 127.0.0.1:8080 that answers with what it received.
Logs: $LOG_DIR

Try:
  # security-headers: the security headers on the response, and no \`server\` header
  # (the echo server sends \`server\` and \`x-powered-by\`; the filter removes them)
  curl -si http://127.0.0.1:10000/

  # the same headers on Envoy's own reply (a direct_response 404 that never reaches the upstream)
  curl -si http://127.0.0.1:10000/local-reply

  # jwt-auth under /jwt/: 401 without a token, the claims upstream with the demo token,
  # 403 where a rule needs the scope "admin" the token lacks
  TOKEN=$DEMO_TOKEN
  curl -si http://127.0.0.1:10000/jwt/items
  curl -s -H "authorization: Bearer \$TOKEN" http://127.0.0.1:10000/jwt/items
  curl -si -H "authorization: Bearer \$TOKEN" http://127.0.0.1:10000/jwt/admin

  # rate-limit: 100 requests in a burst, then 50 a second per client; the rest get 429
  # with Retry-After and RateLimit headers (300 requests, 16 at a time)
  seq 300 | xargs -P 16 -I{} curl -s -o /dev/null -w '%{http_code}\\n' http://127.0.0.1:10000/ | sort | uniq -c

  # region-router under /regions/: the region chosen and why, in x-meshward-region-decision
  curl -si -H 'x-region-preference: ap-south-1' http://127.0.0.1:10000/regions/
  curl -si -H 'x-latency-sensitive: true' http://127.0.0.1:10000/regions/

  # circuit-metrics and the rest: what the filters report (meshward_* names, with labels)
  curl -s http://127.0.0.1:9901/stats/prometheus | grep '^meshward_'

Ctrl-C stops both.
EOF
fi
wait -n "${pids[@]}"
echo "run: a process exited; the end of its log:" >&2
tail -n 20 "$LOG_DIR"/*.log >&2
exit 1
