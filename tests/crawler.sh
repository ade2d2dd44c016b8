#!/bin/sh
# The crawler example against the test site of tests/http_testd.c (a real
# server on a free 127.0.0.1 port): every page reachable within the depth
# limit is fetched exactly once, failing pages are reported after their
# retries, pages that fail once are retried into success, the link to
# another host is not followed.
#
# Usage: tests/crawler.sh BUILD_DIR
set -u
build=$(cd "${1:?usage: crawler.sh BUILD_DIR}" && pwd)
command -v python3 >/dev/null 2>&1 || { echo "skipped: python3 is not installed"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cogent-crawler.XXXXXX")
trap 'kill "$keep" 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM

# The server lives while its stdin is open: a sleeping writer holds it.
mkfifo "$tmp/in"
sleep 120 > "$tmp/in" &
keep=$!
"$build/http_testd" --site 400 < "$tmp/in" > "$tmp/port" &
for _ in $(seq 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
port=$(awk '{print $2}' "$tmp/port")
[ -n "$port" ] || { echo "http_testd did not start"; exit 1; }

"$build/crawler" -c 20 -H 4 -d 4 -r 3 -t 5000 "http://127.0.0.1:$port/site/0" > "$tmp/out" 2> "$tmp/err"
rc=$?
[ $rc -eq 0 ] || { echo "crawler exited $rc"; cat "$tmp/err"; exit 1; }

python3 - "$tmp/out" "$tmp/err" <<'PY'
import re, sys
out = open(sys.argv[1]).read().splitlines()
err = open(sys.argv[2]).read()
summary = [l for l in out if l.startswith("pages ")]
assert len(summary) == 1, "no summary line"
lines = [l for l in out if not l.startswith("pages ")]
got = {}
for l in lines:
    m = re.match(r"^(\d+|ERR \S+) (\d+) (\d+) http://127\.0\.0\.1:\d+/site/(\d+)$", l)
    assert m, "unexpected line: " + l
    page = int(m.group(4))
    assert page not in got, "fetched twice: %d" % page
    got[page] = (m.group(1), int(m.group(2)))
assert "outside.invalid" not in "".join(out), "followed a link to another host"
# The site's rules (http_testd.c): page i links to 3i+1..3i+3; i % 11 == 5
# always fails with 500; i % 13 == 6 fails once with 503.
want, frontier = {0: 0}, [0]
while frontier:
    nxt = []
    for i in frontier:
        if i % 11 == 5 or want[i] >= 4:
            continue
        for k in (3 * i + 1, 3 * i + 2, 3 * i + 3):
            if k < 400 and k not in want:
                want[k] = want[i] + 1
                nxt.append(k)
    frontier = nxt
assert set(got) == set(want), "pages: missing %s, extra %s" % (sorted(set(want) - set(got))[:10], sorted(set(got) - set(want))[:10])
for i, (status, depth) in got.items():
    assert depth == want[i], "page %d at depth %d, not %d" % (i, depth, want[i])
    assert status == ("500" if i % 11 == 5 else "200"), "page %d: %s" % (i, status)
retried = int(re.search(r"retried (\d+)", summary[0]).group(1))
fails = sum(1 for i in got if i % 11 == 5)
once = sum(1 for i in got if i % 13 == 6 and i % 11 != 5)
assert retried == 3 * fails + once, "retried %d, expected %d" % (retried, 3 * fails + once)
assert "progress:" in err, "no progress lines on stderr"
print("crawler: %d pages, %d failing as expected, %d retries" % (len(got), fails, retried))
PY
