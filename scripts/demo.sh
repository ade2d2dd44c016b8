#!/bin/sh
# Runs the classic demos from a build directory and sums up what they show.
set -e
b=${1:-build}
if [ -t 1 ]; then bold='\033[1m' off='\033[0m'; else bold='' off=''; fi
say() { printf "\n${bold}== %s${off}\n" "$1"; }
say "greenlet ping-pong (examples/pingpong.c): explicit switches between two fibers"
"$b/pingpong"
say "generator producer/consumer with send (examples/gen_prodcons.c)"
"$b/gen_prodcons"
say "as-completed (examples/as_completed.c): results in completion order"
"$b/as_completed"
say "synchronous vs concurrent (examples/sync_vs_async.c): 10 waits of 0.5 s"
"$b/sync_vs_async"
cat <<'TXT'

Summary: fibers switch explicitly (greenlet); generators exchange values
with send/yield; coroutines on the hub run while others sleep, so ten
half-second waits take half a second, and a group hands back results in
the order they finish.  See README.md and docs/.
TXT
