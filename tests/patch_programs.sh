#!/bin/sh
# Ordinary programs under libcogent-patch.so: a shell pipeline, python3,
# curl against a local HTTP server, git, redis-cli against a local
# redis-server.  Each case runs three times:
#
#   plain     no preload;
#   preload   LD_PRELOAD=libcogent-patch.so: no thread has a hub, so every
#             call is libc's; the wrappers (close, fcntl, sigaction...)
#             must still change nothing;
#   hub       the same with COGENT_PATCH_HUB=1: each program's main thread
#             gets a hub at start, and its blocking calls go through cogent
#             (the "hubs" case below checks that it does).
#
# Output and exit code must be identical in the three.  Several cases look
# at the terminal's and the pipes' flags from a later process: a patched
# program must leave them as it found them (docs/patch.md).
#
# Usage: tests/patch_programs.sh BUILD_DIR   (the directory holding
# libcogent-patch.so).  Exit 77 (skipped) only if a program is missing
# (scripts/deps.sh installs them).
set -u
build=$(cd "${1:?usage: patch_programs.sh BUILD_DIR}" && pwd)
patch=$build/libcogent-patch.so
[ -f "$patch" ] || { echo "no $patch"; exit 1; }
for p in python3 curl git redis-server redis-cli script timeout; do
  command -v "$p" >/dev/null 2>&1 || { echo "skipped: $p is not installed (scripts/deps.sh installs it)"; exit 77; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cogent-programs.XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT INT TERM

# A free TCP port on 127.0.0.1 (the kernel picks; a race with another
# program taking it meanwhile is retried by the caller's readiness loop).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The flags of this process's stdin and stdout as a later process sees
# them: O_NONBLOCK set there by an earlier program is the bug class.
flags_py='import fcntl, os
for fd in (0, 1):
    print("fd", fd, "nonblock" if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK else "blocking")'

# ------------------------------------------------------------------ cases
# Each prints what must not change.  $run prefixes every program under
# test (empty, or env with the preload).

case_pipeline() {
  # stdin and stdout shared by successive programs, as a shell shares
  # them: the reads of the second must block, not fail with EAGAIN.
  { echo first; sleep 0.3; echo second; } |
    { $run sh -c 'read a; echo "got $a"'; $run cat; $run python3 -c "$flags_py"; } |
    { $run cat; $run python3 -c "$flags_py"; }
  echo "status $?"
  seq 1 20000 | $run sort -rn | $run uniq | $run head -n 3
  seq 1 200000 | $run cat | $run cksum
  $run sh -c 'exec 3>&1; echo to-dup >&3; printf "%s\n" a b c | while read x; do echo "line $x"; done'
}

case_tty() {
  # a terminal (script's pseudo-terminal): its flags, shared by the whole
  # session, stay blocking after a patched program wrote to it
  script -qec "$run sh -c 'echo on a tty; test -t 1 && echo isatty'; $run python3 -c '$flags_py'" /dev/null \
    </dev/null | tr -d '\r'
}

case_python() {
  printf 'alpha\nbeta\n' | $run python3 -c '
import os, select, signal, socket, subprocess, sys, threading, time
print("stdin:", sys.stdin.read().split())
print("sub:", subprocess.run(["sh", "-c", "echo from child; exit 3"], capture_output=True, text=True).stdout.strip())
print("rc:", subprocess.call(["sh", "-c", "exit 3"]))
a, b = socket.socketpair()
def echo():
    while True:
        d = b.recv(4096)
        if not d:
            break
        b.sendall(d.upper())
    b.close()
t = threading.Thread(target=echo)
t.start()
payload = b"x" * 300000
a.sendall(payload)
got = b""
while len(got) < len(payload):
    got += a.recv(65536)
a.shutdown(socket.SHUT_WR)
t.join()
print("socketpair:", len(got), got == payload.upper())
r, w = os.pipe()
print("select idle:", select.select([r], [], [], 0.05)[0])
os.write(w, b"z")
print("select ready:", select.select([r], [], [], 5)[0] == [r])
t0 = time.monotonic(); time.sleep(0.05); print("slept:", time.monotonic() - t0 >= 0.05)
class Alarm(Exception):
    pass
def on_alarm(sig, frame):
    raise Alarm()
signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.2)
t0 = time.monotonic()
try:
    time.sleep(5)
    print("sleep: not interrupted")
except Alarm:
    print("sleep interrupted by a signal:", time.monotonic() - t0 < 2)
signal.setitimer(signal.ITIMER_REAL, 0.2)
try:
    os.read(r, 1)
    os.read(r, 1)
    print("read: not interrupted")
except Alarm:
    print("read interrupted by a signal")
sys.stdout.write("".join("%d\n" % i for i in range(100000)))
'
  echo "status $?"
}

case_http() {
  port=$(free_port)
  mkdir -p "$tmp/www"
  python3 -c 'import sys; sys.stdout.write("hello from a file\n" * 5000)' >"$tmp/www/page.txt"
  (cd "$tmp/www" && exec $run python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) &
  server=$!
  i=0
  until curl -s -o /dev/null "http://127.0.0.1:$port/page.txt" || [ $i -ge 100 ]; do sleep 0.05; i=$((i + 1)); done
  $run curl -s "http://127.0.0.1:$port/page.txt" | cksum
  $run curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$port/missing"
  $run curl -s "http://localhost:$port/page.txt" | head -n 2
  $run curl -s --max-time 5 "http://127.0.0.1:1/" >/dev/null
  echo "refused: $?"
  kill "$server"
  wait "$server" 2>/dev/null || true
}

case_git() {
  repo=$tmp/repo.$mode
  rm -rf "$repo"
  mkdir -p "$repo"
  (
    cd "$repo" || exit 1
    export GIT_CONFIG_NOSYSTEM=1 HOME="$repo" GIT_AUTHOR_DATE='2024-01-01T00:00:00Z'
    export GIT_COMMITTER_DATE='2024-01-01T00:00:00Z' GIT_PAGER=cat
    $run git init -q -b main . && $run git config user.email t@example.com && $run git config user.name Tester
    for i in 1 2 3; do
      echo "line $i" >>file.txt
      $run git add file.txt && $run git commit -q -m "commit $i"
    done
    $run git log --format='%H %s'
    $run git diff HEAD~2 --stat
    $run git rev-list --count HEAD
  )
  echo "status $?"
}

case_redis() {
  port=$(free_port)
  $run redis-server --port "$port" --bind 127.0.0.1 --dir "$tmp" --save '' --appendonly no \
    --daemonize no --loglevel warning >/dev/null 2>&1 &
  server=$!
  i=0
  until [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] || [ $i -ge 100 ]; do sleep 0.05; i=$((i + 1)); done
  $run redis-cli -p "$port" set greeting hello
  $run redis-cli -p "$port" get greeting
  seq 1 500 | sed 's/^/RPUSH list /' | $run redis-cli -p "$port" >/dev/null
  $run redis-cli -p "$port" llen list
  $run redis-cli -p "$port" lrange list 0 2
  $run redis-cli -p "$port" incrby counter 41
  $run redis-cli -p "$port" no-such-command
  echo "status $?"
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1
  wait "$server" 2>/dev/null
}

# The control: in the hub mode the programs do run with a hub (its
# doorbell, an eventfd, is open from the start), in the others they do not.
case_hubs() {
  $run python3 -c 'import os
fds = []
for f in os.listdir("/proc/self/fd"):
    try:
        fds.append(os.readlink("/proc/self/fd/" + f))
    except OSError:
        pass  # the directory listing itself
print("hub" if "anon_inode:[eventfd]" in fds else "no hub")'
}

# ------------------------------------------------------------------- run

failed=0
passed=0
for c in pipeline tty python http git redis; do
  for mode in plain preload hub; do
    # every program is bounded: a call that never returns fails the case
    case $mode in
    plain) run="timeout 30" ;;
    preload) run="timeout 30 env LD_PRELOAD=$patch" ;;
    hub) run="timeout 30 env LD_PRELOAD=$patch COGENT_PATCH_HUB=1" ;;
    esac
    "case_$c" >"$tmp/$c.$mode.out" 2>"$tmp/$c.$mode.err"
    echo "exit $?" >>"$tmp/$c.$mode.out"
  done
  if cmp -s "$tmp/$c.plain.out" "$tmp/$c.preload.out" && cmp -s "$tmp/$c.plain.out" "$tmp/$c.hub.out"; then
    echo "ok: $c ($(wc -l <"$tmp/$c.plain.out") lines identical plain, preloaded, with a hub)"
    passed=$((passed + 1))
  else
    echo "FAILED: $c"
    for mode in preload hub; do
      diff "$tmp/$c.plain.out" "$tmp/$c.$mode.out" >"$tmp/diff" || { echo "--- plain vs $mode:"; head -n 40 "$tmp/diff"; }
      [ -s "$tmp/$c.$mode.err" ] && { echo "--- stderr ($mode):"; head -n 20 "$tmp/$c.$mode.err"; }
    done
    failed=$((failed + 1))
  fi
done

mode=plain run="timeout 30"
[ "$(case_hubs)" = "no hub" ] || { echo "FAILED: a plain program has a hub"; failed=$((failed + 1)); }
run="timeout 30 env LD_PRELOAD=$patch"
[ "$(case_hubs)" = "no hub" ] || { echo "FAILED: a preloaded program has a hub"; failed=$((failed + 1)); }
run="timeout 30 env LD_PRELOAD=$patch COGENT_PATCH_HUB=1"
if [ "$(case_hubs)" = hub ]; then
  echo "ok: hubs (COGENT_PATCH_HUB=1 gives the main thread a hub; nothing else does)"
  passed=$((passed + 1))
else
  echo "FAILED: COGENT_PATCH_HUB=1 gave no hub"
  failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
