#!/usr/bin/env bash
# `make run`: the echo upstream on 127.0.0.1:8080 and Envoy with envoy-config/meshward.yaml
# on 127.0.0.1:10000 (admin 9901), with a few curl lines to try. Ctrl-C stops both.
# Expects `make setup` and `make build` to have run (`make run` does both first).
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=envoy-config/meshward.yaml
ENVOY=.venv/bin/envoy
LOG_DIR=${RUN_LOG_DIR:-$(mktemp -d -t meshward-run.XXXXXX)}

[[ -x $ENVOY ]] || { echo "run: $ENVOY not found: run \`make setup\` first" >&2; exit 1; }
for port in 8080 9901 10000; do
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

"${CARGO_TARGET_DIR:-target}/debug/meshward-echo" --port 8080 >"$LOG_DIR/echo.log" 2>&1 &
pids+=($!)
"$ENVOY" -c "$CONFIG" --concurrency 2 --disable-hot-restart >"$LOG_DIR/envoy.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 300); do
  if [[ $(curl -s http://127.0.0.1:9901/ready 2>/dev/null) == LIVE ]]; then
    break
  fi
  if ! kill -0 "${pids[@]}" 2>/dev/null; then
    echo "run: Envoy or the echo server exited; the end of their logs:" >&2
    tail -n 20 "$LOG_DIR/envoy.log" "$LOG_DIR/echo.log" >&2
    exit 1
  fi
  sleep 0.1
done
[[ $(curl -s http://127.0.0.1:9901/ready) == LIVE ]] || {
  echo "run: Envoy was not ready after 30s; see $LOG_DIR/envoy.log" >&2
  exit 1
}

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

  # what the filters report
  curl -s http://127.0.0.1:9901/stats/prometheus | grep -v '^envoy_' | grep -v '^#'

Ctrl-C stops both.
EOF
wait -n "${pids[@]}"
echo "run: a process exited; the end of its log:" >&2
tail -n 20 "$LOG_DIR/envoy.log" "$LOG_DIR/echo.log" >&2
exit 1
