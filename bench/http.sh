#!/bin/bash
# The HTTP client benchmark: fetch N small pages (10,000) from a local
# nginx with C = 100 and 1000 at a time, over keep-alive HTTP/1.1 and over
# HTTPS (HTTP/1.1, the same CA pinned by every client), in one run:
#   cogent        co_http_get from C coroutines on one hub (bench_http_fetch)
#   curl-multi    libcurl's multi interface in its own curl_multi_poll
#                 loop: the floor, what cogent drives
#   curl-threads  libcurl's easy interface from C pthreads
#   aiohttp       C tasks on one ClientSession, asyncio and uvloop
#   go            net/http, C goroutines on one Client (GOMAXPROCS=1)
# nginx runs one worker pinned to one core, every client on the other
# (taskset), REPEAT times each (default 3), interleaved; medians reported
# with pages/s and the client's CPU time per page (getrusage).
#   bench/http.sh BUILD_DIR      (a build with COGENT_BENCH=ON)
# Output: bench/out/http.md and bench/out/http.json.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-build-bench}" && pwd)
repeat=${REPEAT:-3}
pages=${HTTP_PAGES:-10000}
conc=${HTTP_CONC:-"100 1000"}
out="$here/out"
bin="$out/bin"
mkdir -p "$bin"
raw="$out/http_raw.txt"
: >"$raw"
ulimit -n 20000 2>/dev/null || true
command -v nginx >/dev/null || { echo "nginx is missing (scripts/deps.sh bench installs it)"; exit 1; }

echo "building HTTP peers..."
gcc -O2 -o "$bin/http_curl_multi" "$here/peers/http_curl_multi.c" -lcurl
gcc -O2 -o "$bin/http_curl_threads" "$here/peers/http_curl_threads.c" -lcurl -lpthread
(cd "$here/peers" && GOCACHE="$out/gocache" GO111MODULE=off go build -o "$bin/http_go" http_go.go)
py=/usr/bin/python3
loops=(asyncio)
$py -c "import uvloop" 2>/dev/null && loops+=(uvloop)

# ------------------------------------------------- nginx and its pages
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cogent-http-bench.XXXXXX")
cleanup() { [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null; sleep 0.2; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM
mkdir -p "$tmp/www/p"
chmod 755 "$tmp" # nginx's worker runs as another user
$py - "$tmp/www/p" "$pages" <<'PY'
import sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    links = " ".join('<a href="/p/%d.html">page %d</a>' % ((3 * i + k) % n, (3 * i + k) % n) for k in (1, 2, 3))
    with open("%s/%d.html" % (d, i), "w") as f:
        f.write("<html><head><title>page %d</title></head><body><h1>page %d</h1><p>%s</p><p>%s</p></body></html>\n"
                % (i, i, "lorem ipsum dolor sit amet " * 12, links))
PY
(cd "$tmp" && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
   -days 2 -subj '/CN=bench CA' 2>/dev/null &&
 openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.csr \
   -subj '/CN=localhost' 2>/dev/null &&
 printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >ext.cnf &&
 openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext.cnf 2>/dev/null)
free_port() { $py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
sport=$(free_port)
cat >"$tmp/nginx.conf" <<CONF
worker_processes 1;
worker_cpu_affinity 01;
worker_rlimit_nofile 20000;
pid $tmp/nginx.pid;
error_log $tmp/error.log;
events { worker_connections 10000; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  client_body_temp_path $tmp/body;
  proxy_temp_path $tmp/proxy;
  fastcgi_temp_path $tmp/fastcgi;
  uwsgi_temp_path $tmp/uwsgi;
  scgi_temp_path $tmp/scgi;
  server {
    listen 127.0.0.1:$port;
    listen 127.0.0.1:$sport ssl;
    ssl_certificate $tmp/srv.pem;
    ssl_certificate_key $tmp/srv.key;
    root $tmp/www;
  }
}
CONF
nginx -c "$tmp/nginx.conf" -p "$tmp"
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/p/0.html" >/dev/null && break; sleep 0.1; done

ncpu=$(nproc)
pin="taskset -c $((ncpu - 1))"
command -v taskset >/dev/null && [ "$ncpu" -ge 2 ] || pin=""

one() { # proto C impl
  local proto=$1 c=$2 impl=$3 url tls=()
  if [ "$proto" = https ]; then url="https://127.0.0.1:$sport/p/%d.html"; tls=(--cafile "$tmp/ca.pem")
  else url="http://127.0.0.1:$port/p/%d.html"; fi
  local line
  case $impl in
    cogent) line=$($pin "$build/bench/bench_http_fetch" "$url" "$pages" "$c" "${tls[@]}") ;;
    curl-multi) line=$($pin "$bin/http_curl_multi" "$url" "$pages" "$c" "${tls[@]}") ;;
    curl-threads) line=$($pin "$bin/http_curl_threads" "$url" "$pages" "$c" "${tls[@]}") ;;
    aiohttp) line=$($pin $py "$here/peers/http_aiohttp.py" "$url" "$pages" "$c" asyncio "${tls[@]}") ;;
    aiohttp-uvloop) line=$($pin $py "$here/peers/http_aiohttp.py" "$url" "$pages" "$c" uvloop "${tls[@]}") ;;
    go) line=$(GOMAXPROCS=1 $pin "$bin/http_go" "$url" "$pages" "$c" "${tls[@]}") ;;
  esac
  [ -n "$line" ] && echo "{\"proto\": \"$proto\", \"run\": $line}" >>"$raw"
}

impls=(cogent curl-multi curl-threads aiohttp go)
[ "${#loops[@]}" = 2 ] && impls+=(aiohttp-uvloop)
echo "running ($pages pages, C = $conc, $repeat rounds)..."
for r in $(seq "$repeat"); do
  for proto in http https; do
    for c in $conc; do
      for impl in "${impls[@]}"; do
        one "$proto" "$c" "$impl" || echo "warning: $impl $proto C=$c failed" >&2
      done
    done
  done
  echo "  round $r done"
done

$py - "$raw" "$out/http.json" "$out/http.md" <<'PY'
import json, statistics, sys, platform, datetime, os
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    k = (r["proto"], r["run"]["concurrency"], r["run"]["impl"])
    by.setdefault(k, []).append(r["run"])
res = []
for (proto, c, impl), runs in sorted(by.items()):
    res.append({"proto": proto, "concurrency": c, "impl": impl,
                "pages_per_s": statistics.median(x["pages_per_s"] for x in runs),
                "cpu_us_per_page": statistics.median(x["cpu_us_per_page"] for x in runs),
                "failed": max(x["failed"] for x in runs), "runs": len(runs)})
json.dump({"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
           "cpus": os.cpu_count(), "results": res}, open(sys.argv[2], "w"), indent=1)
order = ["cogent", "curl-multi", "curl-threads", "aiohttp", "aiohttp-uvloop", "go"]
lines = ["| proto | C | client | pages/s | x cogent | CPU µs/page | failed |", "|---|---|---|---|---|---|---|"]
for proto in ("http", "https"):
    for c in sorted({r["concurrency"] for r in res}):
        sel = {r["impl"]: r for r in res if r["proto"] == proto and r["concurrency"] == c}
        base = sel.get("cogent")
        for impl in order:
            if impl not in sel: continue
            r = sel[impl]
            ratio = "%.2f" % (r["pages_per_s"] / base["pages_per_s"]) if base else "-"
            lines.append("| %s | %d | %s | %.0f | %s | %.1f | %d |" % (proto, c, impl, r["pages_per_s"], ratio,
                                                                    r["cpu_us_per_page"], r["failed"]))
open(sys.argv[3], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
