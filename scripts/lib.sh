# Shell functions the scripts share; `source "$(dirname "$0")/lib.sh"`.

# Builds the `wallet` binary and sets $wallet to its path, wherever cargo puts
# it (CARGO_TARGET_DIR, build.target-dir, --target …): the path is read from
# cargo's own report of what it built. Arguments go to `cargo build`
# (e.g. --release). Cargo's progress and errors show on stderr.
build_wallet() {
  local report
  report="$(cargo build --bin wallet --message-format=json-render-diagnostics "$@")" || {
    echo "cargo build --bin wallet $* failed (its errors are above)" >&2
    return 1
  }
  wallet="$(printf '%s\n' "$report" \
    | grep '"reason":"compiler-artifact"' | grep '"name":"wallet"' | grep '"kind":\["bin"\]' \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)"
  if [ ! -x "$wallet" ]; then
    echo "cargo build --bin wallet $* did not report where it put the wallet binary" >&2
    return 1
  fi
}

# Starts `$wallet serve` on a free port and waits until it listens: sets
# $service (its pid) and $addr (host:port, read from its "wallet listening"
# log line). The caller's environment configures it (DATABASE_URL, …);
# stderr goes to the file $1. Fails, showing the end of that log, if the
# service exits or does not listen within ${WALLET_START_TIMEOUT:-60} s.
start_wallet() {
  local log="$1" line
  : >"$log"
  # JSON and this filter whatever the caller's LOG_FORMAT and RUST_LOG, since
  # the address is read from the log: the service's own lines at INFO, one
  # line per request off.
  WALLET_ADDR=127.0.0.1:0 LOG_FORMAT=json RUST_LOG=warn,wallet=info,wallet::ops::observe=warn \
    "$wallet" serve 2>>"$log" &
  service=$!
  local deadline=$((SECONDS + ${WALLET_START_TIMEOUT:-60}))
  addr=""
  until [ -n "$addr" ]; do
    if ! kill -0 "$service" 2>/dev/null; then
      local status=0
      wait "$service" || status=$?
      service=""
      echo "wallet serve exited with status $status before it listened; the end of $log:" >&2
      tail -n 20 "$log" >&2
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "wallet serve did not listen within ${WALLET_START_TIMEOUT:-60} s; the end of $log:" >&2
      tail -n 20 "$log" >&2
      return 1
    fi
    line="$(grep -m 1 '"message":"wallet listening"' "$log" || true)"
    addr="$(printf '%s' "$line" | sed -n 's/.*"addr":"\([^"]*\)".*/\1/p')"
    [ -n "$addr" ] || sleep 0.05
  done
}

# Stops the service start_wallet started (SIGTERM: it finishes the requests
# in flight) and fails if it did not exit cleanly.
stop_wallet() {
  [ -n "${service:-}" ] || return 0
  local pid="$service" status=0
  service=""
  kill -TERM "$pid"
  wait "$pid" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "wallet serve exited with status $status after SIGTERM" >&2
    return 1
  fi
}

# Runs a command with its stderr in the file $1, and shows that file if the
# command fails: for commands whose progress output would clutter a table.
quietly() {
  local log="$1"; shift
  "$@" 2>"$log" || {
    local status=$?
    echo "failed (status $status): $*" >&2
    tail -n 30 "$log" >&2
    return "$status"
  }
}
