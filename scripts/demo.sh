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
say "mutex vs recursive lock (examples/lock_lesson.c): a self-deadlock refused, not hung"
"$b/lock_lesson" 2>&1
say "the two-lock deadlock (examples/deadlock.c): the cycle reported, the call fails with EDEADLK"
"$b/deadlock" 2>&1
say "producer/consumer with a joinable queue (examples/joinable_queue.c)"
"$b/joinable_queue"
say "a priority queue of alerts (examples/priority_alerts.c)"
"$b/priority_alerts"
say "a bounded queue throttles a fast producer (examples/bounded_queue.c)"
"$b/bounded_queue"
say "the uppercase echo server (examples/upper_echo.c): 500 concurrent connections, every answer checked"
"$b/upper_echo"
say "concurrent downloads (examples/downloads.c): 20 pages that take 100 ms each"
"$b/downloads"
say "the GIL lesson, answered for C (examples/gil_lesson.c): CPU-bound work on threads and coroutines, I/O-bound work three ways"
"$b/gil_lesson"
say "a lock across processes (examples/process_lock.c): five processes print one at a time"
"$b/process_lock"
say "producer/consumer over a process queue (examples/process_queue.c), daemon consumers"
"$b/process_queue"
say "shared data (examples/shared_data.c): Value, Array and a shared map across four processes"
"$b/shared_data"
say "Pipe ping-pong between two processes (examples/pipe_pingpong.c), and an 8 MiB message both ways"
"$b/pipe_pingpong"
say "the process pool of squares (examples/pool_squares.c): apply, apply_async, map"
"$b/pool_squares"
say "ProcessPoolExecutor with done callbacks (examples/process_executor.c); a worker's crash fails one future"
"$b/process_executor"
say "zombies and orphans (examples/zombie_orphan.c), with ps"
"$b/zombie_orphan"
say "a server written with plain blocking calls (examples/blocking_echo.c), with and without libcogent-patch.so"
printf "patched:   "; "$b/blocking_echo"
printf "unpatched: "; "$b/blocking_echo_unpatched"
cat <<'TXT'

Summary: fibers switch explicitly (greenlet); generators exchange values
with send/yield; coroutines on the hub run while others sleep, so ten
half-second waits take half a second, and a group hands back results in
the order they finish.  Locks refuse a self-deadlock and report a cycle of
waits with names and places instead of hanging; queues hand work from
producers to consumers, in priority order when asked, and a bounded one
keeps a fast producer at most a few items ahead.  One thread serves 500
connections with code written as if each had its own thread; twenty slow
downloads take the time of one; a CPU-bound job split over threads
uses every core (C has no GIL) while coroutines of one hub take turns,
and waits are cheapest as coroutines; and a program written with plain blocking
read/write/accept/usleep becomes concurrent by linking libcogent-patch.so
(or LD_PRELOAD-ing it).  Processes share a lock, a queue and a pipe
(a message far bigger than the kernel's buffer goes through whole); a
pool of worker processes runs tasks synchronously, asynchronously or as
a map, hands back the thread pool's futures, and survives a worker's
crash; cogent reaps its children as they end, so no zombie lingers.
See README.md and docs/.
TXT
