#!/bin/bash
# The echo benchmark: cogent's echo server (one hub) against a hand-written
# epoll server, libuv, libevent, Go net (GOMAXPROCS=1), gevent's
# StreamServer, asyncio and uvloop, in one run on one machine.
#   bench/echo.sh BUILD_DIR      (bench/run.sh calls it)
# Each server is pinned to one core and the load generator to the other.
# Points: C=1, 100, 1000 connections with 64-byte messages, and C=100 with
# 4 KiB; T seconds each (ECHO_SECONDS, default 3), REPEAT times (default 3),
# medians reported.  Beside round trips/s: p99 latency, the server's CPU
# time per round trip (utime+stime from /proc/PID/stat: with 2 cores the
# one-thread load generator saturates before a fast server does), and its
# RSS per idle connection with 10,000 connections held.
# Output: bench/out/echo.md and bench/out/echo.json.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-build-bench}" && pwd)
repeat=${REPEAT:-3}
secs=${ECHO_SECONDS:-3}
hold=${ECHO_HOLD:-10000}
out="$here/out"
bin="$out/bin"
mkdir -p "$bin"
raw="$out/echo_raw.txt"
[ "${ECHO_KEEP_RAW:-0}" = 1 ] || : >"$raw" # ECHO_KEEP_RAW=1 ECHO_SKIP_RUNS=1: redo the idle-connection phase only
ulimit -n 20000 2>/dev/null || true

echo "building echo peers..."
gcc -O2 -o "$bin/echo_epoll" "$here/peers/echo_epoll.c"
gcc -O2 -o "$bin/echo_libuv" "$here/peers/echo_libuv.c" -luv
gcc -O2 -o "$bin/echo_libevent" "$here/peers/echo_libevent.c" -levent
(cd "$here/peers" && GOCACHE="$out/gocache" GO111MODULE=off go build -o "$bin/echo_go" echo_go.go)
py=/usr/bin/python3
loadgen="$build/bench/loadgen"

servers=(cogent epoll libuv libevent go gevent asyncio)
$py -c "import uvloop" 2>/dev/null && servers+=(uvloop)
cmd_of() {
  case $1 in
    cogent) echo "$build/bench/echo_server" ;;
    epoll) echo "$bin/echo_epoll" ;;
    libuv) echo "$bin/echo_libuv" ;;
    libevent) echo "$bin/echo_libevent" ;;
    go) echo "env GOMAXPROCS=1 $bin/echo_go" ;;
    gevent | asyncio | uvloop) echo "$py $here/peers/echo_py.py $1" ;;
  esac
}

srv_core=0
load_core=$(($(nproc) - 1))
# Below the ephemeral range (32768-60999): 10,000 client connections must
# not be holding the port the next server wants.
port=$((10000 + RANDOM % 12000))
pid=""

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

start() { # start NAME: the server on a fresh port, pinned; sets pid
  port=$((port + 1))
  # shellcheck disable=SC2046
  taskset -c $srv_core $(cmd_of "$1") "$port" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "warning: $1 did not start" >&2
  return 1
}

stop() { # stop NAME: SIGTERM; cogent must exit 0
  kill -TERM "$pid" 2>/dev/null || true
  local rc=0
  wait "$pid" 2>/dev/null || rc=$?
  if [ "$1" = cogent ] && [ $rc -ne 0 ]; then echo "warning: echo_server exited $rc" >&2; fi
}

hz=$(getconf CLK_TCK)
echo "running (each point ${secs}s, $repeat times)..."
runs=$repeat
[ "${ECHO_SKIP_RUNS:-0}" = 1 ] && runs=0
for r in $(seq "$runs"); do
  for s in "${servers[@]}"; do
    start "$s" || continue
    for point in "1 64" "100 64" "1000 64" "100 4096"; do
      set -- $point
      t0=$(cpu_ticks "$pid")
      line=$(taskset -c $load_core "$loadgen" "$port" "$1" "$2" "$secs" || true)
      t1=$(cpu_ticks "$pid")
      echo "$s c=$1 m=$2 rep=$r $line cpu_ticks=$((t1 - t0)) hz=$hz secs=$secs" >>"$raw"
    done
    stop "$s"
  done
done

echo "holding $hold idle connections per server..."
for s in "${servers[@]}"; do
  start "$s" || continue
  base=$(rss_kib "$pid")
  fifo=$(mktemp -u)
  mkfifo "$fifo"
  taskset -c $load_core "$loadgen" --hold "$port" "$hold" <"$fifo" >"$out/hold.txt" &
  lg=$!
  exec 4>"$fifo"
  for _ in $(seq 600); do grep -q HELD "$out/hold.txt" 2>/dev/null && break; sleep 0.1; done
  sleep 0.5
  rss=$(rss_kib "$pid")
  echo "$s hold $(cat "$out/hold.txt") base_kib=$base rss_kib=$rss" >>"$raw"
  exec 4>&-
  wait $lg 2>/dev/null || true
  rm -f "$fifo"
  stop "$s"
done

$py - "$raw" "$out" "$(date -u +%F)" "$(nproc)" <<'PY'
import json, re, statistics, sys
raw, out, date, ncpu = sys.argv[1:5]
runs, hold = {}, {}
for line in open(raw):
    f = line.split()
    if len(f) > 1 and f[1] == "hold":
        held, errors = int(f[3]), int(f[4])
        kv = dict(x.split("=") for x in f[5:])
        hold[f[0]] = {"held": held, "errors": errors,
                      "kib_per_conn": (int(kv["rss_kib"]) - int(kv["base_kib"])) / max(held, 1)}
        continue
    kv = dict(x.split("=", 1) for x in f[1:] if "=" in x)
    if "rps" not in kv:
        continue
    key = (f[0], int(kv["c"]), int(kv["m"]))
    rps = float(kv["rps"])
    cpu_us = int(kv["cpu_ticks"]) / int(kv["hz"]) * 1e6 / max(rps * float(kv["secs"]), 1)
    runs.setdefault(key, []).append((rps, int(kv["p99_us"]), cpu_us, int(kv["errors"])))
points = [(1, 64), (100, 64), (1000, 64), (100, 4096)]
servers = []
for (s, _, _) in runs:
    if s not in servers:
        servers.append(s)
res = {}
for key, v in runs.items():
    res[key] = {"rps": statistics.median(x[0] for x in v), "p99_us": statistics.median(x[1] for x in v),
                "cpu_us": statistics.median(x[2] for x in v), "errors": sum(x[3] for x in v), "n": len(v)}
lines = [f"Echo benchmark, {date}, {ncpu} cores; server pinned to one core, load generator to another; "
         "medians of the repeats.  ratio = cogent's round trips/s over the peer's (>1: cogent ahead); "
         "cpu = server CPU time per round trip.", ""]
hdr = "| server | " + " | ".join(f"C={c} M={m}: rt/s (ratio), p99, cpu" for c, m in points) + " | RSS/idle conn |"
lines += [hdr, "|" + "---|" * (len(points) + 2)]
for s in servers:
    row = [s]
    for c, m in points:
        r = res.get((s, c, m))
        base = res.get(("cogent", c, m))
        if not r:
            row.append("-")
            continue
        ratio = base["rps"] / r["rps"] if base and r["rps"] else float("nan")
        err = f" ({r['errors']} errors)" if r["errors"] else ""
        row.append(f"{r['rps']:,.0f} ({ratio:.2f}x), {r['p99_us']/1000:.2f} ms, {r['cpu_us']:.1f} us{err}")
    h = hold.get(s)
    row.append(f"{h['kib_per_conn']:.1f} KiB ({h['held']} held, {h['errors']} errors)" if h else "-")
    lines.append("| " + " | ".join(row) + " |")
open(f"{out}/echo.md", "w").write("\n".join(lines) + "\n")
json.dump({"date": date, "runs": {f"{k[0]} c={k[1]} m={k[2]}": v for k, v in res.items()}, "hold": hold},
          open(f"{out}/echo.json", "w"), indent=1)
print("\n".join(lines))
PY
