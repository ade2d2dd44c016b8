#!/bin/bash
# The TLS echo figure: the server's CPU time per round trip of a 64-byte
# message at C = 100 connections, for cogent's plain echo server
# (bench/echo_server.c), cogent's TLS echo (examples/tls_echo.c:
# co_tls_serve on the stream server), and Go's net and crypto/tls echo
# servers (GOMAXPROCS=1).  Handshakes are made before the measurement.
# Each server pinned to one core, the load generator (bench/tls_loadgen.c,
# cogent, the same for all) to the other; T seconds (TLS_SECONDS, 3),
# REPEAT times (3), medians.
#   bench/tls_echo.sh BUILD_DIR
# Output: bench/out/tls_echo.md and bench/out/tls_echo.json.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-build-bench}" && pwd)
repeat=${REPEAT:-3}
secs=${TLS_SECONDS:-3}
conns=${TLS_CONNS:-100}
out="$here/out"
bin="$out/bin"
mkdir -p "$bin"
raw="$out/tls_echo_raw.txt"
: >"$raw"
(cd "$here/peers" && GOCACHE="$out/gocache" GO111MODULE=off go build -o "$bin/echo_go" echo_go.go &&
 GOCACHE="$out/gocache" GO111MODULE=off go build -o "$bin/tls_echo_go" tls_echo_go.go)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cogent-tls-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
(cd "$tmp" && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out cert.pem \
  -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null)
py=/usr/bin/python3
free_port() { $py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ncpu=$(nproc)
spin="taskset -c 0"
cpin="taskset -c $((ncpu - 1))"
command -v taskset >/dev/null && [ "$ncpu" -ge 2 ] || { spin=""; cpin=""; }

one() { # name
  local name=$1 port pid ca=""
  port=$(free_port)
  case $name in
    cogent-plain) $spin "$build/bench/echo_server" "$port" >/dev/null 2>&1 & ;;
    cogent-tls) $spin "$build/bench/bench_tls_echo" server "$port" "$tmp/cert.pem" "$tmp/key.pem" >/dev/null 2>&1 & ca=$tmp/cert.pem ;;
    go-plain) GOMAXPROCS=1 $spin "$bin/echo_go" "$port" >/dev/null 2>&1 & ;;
    go-tls) GOMAXPROCS=1 $spin "$bin/tls_echo_go" "$port" "$tmp/cert.pem" "$tmp/key.pem" >/dev/null 2>&1 & ca=$tmp/cert.pem ;;
  esac
  pid=$!
  for _ in $(seq 50); do $py -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null && break; sleep 0.1; done
  local line
  line=$($cpin "$build/bench/bench_tls_loadgen" "$port" "$pid" "$conns" "$secs" $ca) || true
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  [ -n "$line" ] && echo "{\"server\": \"$name\", \"run\": $line}" >>"$raw"
}

for r in $(seq "$repeat"); do
  for s in cogent-plain cogent-tls go-plain go-tls; do one "$s"; done
  echo "  round $r done"
done
$py - "$raw" "$out/tls_echo.json" "$out/tls_echo.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows: by.setdefault(r["server"], []).append(r["run"])
res = {k: {"rt_per_s": statistics.median(x["rt_per_s"] for x in v),
           "server_cpu_us_per_rt": statistics.median(x["server_cpu_us_per_rt"] for x in v), "runs": len(v)}
       for k, v in by.items()}
json.dump(res, open(sys.argv[2], "w"), indent=1)
base = res.get("cogent-plain", {}).get("server_cpu_us_per_rt")
lines = ["| server | round trips/s | server CPU µs/round trip | x cogent plain |", "|---|---|---|---|"]
for k in ("cogent-plain", "cogent-tls", "go-plain", "go-tls"):
    if k in res:
        r = res[k]
        lines.append("| %s | %.0f | %.2f | %s |" % (k, r["rt_per_s"], r["server_cpu_us_per_rt"],
                     "%.2f" % (r["server_cpu_us_per_rt"] / base) if base else "-"))
open(sys.argv[3], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
