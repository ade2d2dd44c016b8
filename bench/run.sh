#!/bin/bash
# Runs every benchmark figure against its peers, in one run on one machine,
# REPEAT times each (default 3), and reports medians and ratios.
#   bench/run.sh BUILD_DIR        (make bench calls it with build-bench)
# Output: a table on stdout, bench/out/results.json, bench/out/table.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-build-bench}" && pwd)
repeat=${REPEAT:-3}
out="$here/out"
bin="$out/bin"
mkdir -p "$bin"
raw="$out/raw.txt"
: >"$raw"

# ---------------------------------------------------------------- peers
echo "building peers..."
g++ -O2 -o "$bin/switch_boost" "$here/peers/switch_boost.cc" -lboost_context
gcc -O2 -o "$bin/switch_ucontext" "$here/peers/switch_ucontext.c"
gcc -O2 -o "$bin/pthread_sync" "$here/peers/pthread_sync.c" -lpthread
(cd "$here/peers" && GOCACHE="$out/gocache" GO111MODULE=off go build -o "$bin/go_bench" go_bench.go)
gcc -O2 -o "$bin/pool_libuv" "$here/peers/pool_libuv.c" -luv
g++ -O2 -o "$bin/pool_asio" "$here/peers/pool_asio.cc" -lpthread
gcc -O2 -o "$bin/process_floor" "$here/peers/process_floor.c" -lrt
py=/usr/bin/python3
have_uvloop=0
$py -c "import uvloop" 2>/dev/null && have_uvloop=1

# One core for the measured program: the machines are noisy enough.
pin="taskset -c $(( $(nproc) - 1 ))"
command -v taskset >/dev/null || pin=""

run() { # run CMD... : appends its RESULT lines to raw.txt
  for _ in $(seq "$repeat"); do
    $pin "$@" 2>/dev/null | grep '^RESULT' >>"$raw" || echo "warning: $* failed" >&2
  done
}
run2() { # as run, on every core: the two-thread figures
  for _ in $(seq "$repeat"); do
    "$@" 2>/dev/null | grep '^RESULT' >>"$raw" || echo "warning: $* failed" >&2
  done
}

echo "running (each figure $repeat times)..."
b="$build/bench"
run "$b/bench_switch"
run "$bin/switch_boost"
run "$bin/switch_ucontext"
run env GOMAXPROCS=1 "$bin/go_bench" gosched
run $py "$here/peers/py_bench.py" greenlet_switch
run "$b/bench_hub_yield"
run $py "$here/peers/py_bench.py" gevent_yield
run $py "$here/peers/py_bench.py" asyncio_yield
[ $have_uvloop = 1 ] && run $py "$here/peers/py_bench.py" uvloop_yield
run "$b/bench_compact"
run "$b/bench_spawn_join"
run env GOMAXPROCS=1 "$bin/go_bench" spawn
run $py "$here/peers/py_bench.py" gevent_spawn
run $py "$here/peers/py_bench.py" asyncio_spawn
[ $have_uvloop = 1 ] && run $py "$here/peers/py_bench.py" uvloop_spawn
run "$b/bench_sync" lock
run "$b/bench_sync" lock_mt
run "$bin/pthread_sync" mutex
run "$bin/pthread_sync" mutex_mt
run "$b/bench_sync" lock_handoff
run "$b/bench_sync" lock_handoff_fp
run env GOMAXPROCS=1 "$bin/go_bench" mutex_handoff
run "$b/bench_sync" queue_pingpong
run "$b/bench_sync" queue_pingpong_fp
run env GOMAXPROCS=1 "$bin/go_bench" chan_pingpong
run $py "$here/peers/py_bench.py" gevent_queue_pingpong
run $py "$here/peers/py_bench.py" asyncio_queue_pingpong
[ $have_uvloop = 1 ] && run $py "$here/peers/py_bench.py" uvloop_queue_pingpong
run2 "$b/bench_sync" queue_threads
run2 "$b/bench_sync" queue_hubs
run2 "$b/bench_sync" queue_hubs_fp
run2 env GOMAXPROCS=2 "$bin/go_bench" chan_threads
run2 "$bin/pthread_sync" queue
# Thread pools: two workers everywhere, the submitter a third thread, on
# both cores (pinning them to one would measure the scheduler instead).
run2 "$b/bench_pool" rtt_thread
run2 "$b/bench_pool" rtt_coro
run2 "$b/bench_pool" throughput
run2 env GOMAXPROCS=2 "$bin/go_bench" pool_rtt
run2 env GOMAXPROCS=2 "$bin/go_bench" pool_throughput
run2 env UV_THREADPOOL_SIZE=2 "$bin/pool_libuv" pool_rtt
run2 env UV_THREADPOOL_SIZE=2 "$bin/pool_libuv" pool_throughput
run2 "$bin/pool_asio" pool_rtt
run2 "$bin/pool_asio" pool_throughput
run2 $py "$here/peers/py_bench.py" pool_rtt
run2 $py "$here/peers/py_bench.py" pool_throughput
run2 "$b/bench_scaling"
# Processes (issue 12), on both cores (two processes talk): cogent, the raw
# system calls (the floors), Python's multiprocessing (fork).
for f in start_join exec_join pipe_pingpong pqueue_64 pqueue_4k procpool_map procpool_rtt procpool_speedup procpool_crash; do
  run2 "$b/bench_process" $f
done
for f in fork spawn pipe rawpipe_64 rawpipe_4k mq_64 mq_4k; do run2 "$bin/process_floor" $f; done
for f in start_join pipe_pingpong queue_64 queue_4k pool_map ppe_map ppe_rtt; do
  run2 $py "$here/peers/py_process.py" $f
done
# The million: fewer repeats, it takes a while.
repeat=$(( repeat < 3 ? repeat : 3 ))
run "$b/bench_spawn_all"
run env GOMAXPROCS=1 "$bin/go_bench" spawn_all
run env GOMAXPROCS=1 "$bin/go_bench" release_all
run $py "$here/peers/py_bench.py" asyncio_spawn_all
repeat=1
run $py "$here/peers/py_bench.py" gevent_spawn_all
repeat=$(( ${REPEAT:-3} < 3 ? ${REPEAT:-3} : 3 ))
run "$b/bench_alive" 1000000
run "$b/bench_alive" 1000000 compact
run env GOMAXPROCS=1 "$bin/go_bench" alive 1000000
run $py "$here/peers/py_bench.py" asyncio_alive 1000000
repeat=1
run $py "$here/peers/py_bench.py" gevent_alive 200000

# Instructions per operation, counted by callgrind: exact where times are
# noisy (this VM exposes no hardware counters to perf).  The difference of
# two runs, so that start-up cancels out.
instr() { # NAME N1 N2 CMD... (CMD takes the count as its last argument)
  local name=$1 n1=$2 n2=$3 a b
  shift 3
  command -v valgrind >/dev/null || return 0
  a=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" "$n1" 2>&1 >/dev/null | awk '/Collected/ {print $4}')
  b=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" "$n2" 2>&1 >/dev/null | awk '/Collected/ {print $4}')
  [ -n "$a" ] && [ -n "$b" ] && echo "RESULT $name $(( (b - a) / (n2 - n1) )) instructions" >>"$raw"
}
instr spawn_join_instr 100000 200000 "$b/bench_spawn_join" plain
instr queue_pingpong_instr 100000 200000 "$b/bench_sync" queue_pingpong
instr lock_handoff_instr 100000 200000 "$b/bench_sync" lock_handoff

$py - "$raw" "$out" <<'PY'
import json, statistics, sys, datetime, platform, subprocess
raw, out = sys.argv[1], sys.argv[2]
vals = {}
units = {}
for line in open(raw):
    _, name, value, unit = line.split()
    vals.setdefault(name, []).append(float(value))
    units[name] = unit
med = {k: statistics.median(v) for k, v in vals.items()}
if "greenlet_switch" in med:  # greenlet reports one switch; the round trips above are two
    med["greenlet_roundtrip"], units["greenlet_roundtrip"] = 2 * med["greenlet_switch"], "ns/roundtrip"

live = {"64": "64 B", "256": "256 B", "1k": "1 KiB", "4k": "4 KiB"}
# figure: (our result, lower is better, [(peer label, peer result)], goal text)
figures = [
    ("switch", "fiber switch", "switch", [("Boost.Context fcontext", "switch_boost"), ("ucontext swapcontext", "switch_ucontext"),
      ("Go Gosched (GOMAXPROCS=1)", "go_gosched_switch"), ("greenlet", "greenlet_switch")],
     "<= 1.0x Boost, >= 20x Go, >= 50x greenlet"),
    # Each *_fp figure: the same with floating-point work (bench/bench.h);
    # its "peer" is the plain figure, which it must match (lead ~1.0x).
    ("switch_fp", "fiber switch, with FP work", "switch_fp", [("same, without FP work", "switch"),
      ("Boost.Context fcontext, same FP work", "switch_boost_fp")], "= switch"),
    ("hub_yield", "hub yield round trip", "hub_yield", [("Go Gosched round trip", "go_gosched_roundtrip"),
      ("gevent sleep(0)", "gevent_yield"), ("asyncio sleep(0)", "asyncio_yield"), ("uvloop sleep(0)", "uvloop_yield")],
     "<= 20 ns"),
    ("hub_yield_fp", "hub yield round trip, with FP work", "hub_yield_fp", [("same, without FP work", "hub_yield")],
     "= hub_yield"),
] + [
    (f"compact_yield_{l}", f"compact coroutines' yield round trip, {live[l]} live each", f"compact_yield_{l}",
     [("same with stacks of their own", f"own_yield_{l}"), ("Go Gosched round trip", "go_gosched_roundtrip"),
      ("greenlet switch x2 (copies stacks too)", "greenlet_roundtrip")], "faster than Go" if l == "64" else "")
    for l in ("64", "256", "1k", "4k")
] + [
    ("compact_own_yield", "compact <-> own-stack coroutine yield round trip", "compact_own_yield",
     [("two with stacks of their own", "own_yield_256")], "close to own_yield"),
    ("compact_yield_fp", "compact yield round trip, with FP work", "compact_yield_fp",
     [("same, without FP work", "compact_yield_256")], "= compact_yield_256"),
    ("hub_yield_main", "hub yield round trip, main <-> spawned", "hub_yield_main",
     [("two spawned (hub_yield)", "hub_yield")], "close to hub_yield"),
    ("hub_yield_main_fp", "hub yield round trip, main <-> spawned, with FP work", "hub_yield_main_fp",
     [("same, without FP work", "hub_yield_main")], "= hub_yield_main"),
    ("spawn_join", "spawn + run + join", "spawn_join", [("Go go+WaitGroup", "go_spawn_join"),
      ("gevent spawn+joinall", "gevent_spawn_join"), ("asyncio create_task+gather", "asyncio_spawn_join"),
      ("uvloop create_task+gather", "uvloop_spawn_join")],
     "<= 40 ns, >= 5x Go"),
    ("spawn_join_fp", "spawn + run + join, with FP work", "spawn_join_fp", [("same, without FP work", "spawn_join")],
     "= spawn_join"),
] + [
    (f"spawn_all_{n}", f"spawn {n:,} then join them all", f"spawn_all_{n}",
     [("Go go+WaitGroup, same shape", f"go_spawn_all_{n}"), ("asyncio, same shape", f"asyncio_spawn_all_{n}"),
      ("gevent, same shape", f"gevent_spawn_all_{n}")], "<= 100 ns, >= 4x Go" if n == 1000000 else "")
    for n in (1000, 10000, 100000, 1000000)
] + [
    ("release_all", "1M blocked coroutines released and joined", "release_all",
     [("Go, 1M goroutines on a channel", "go_release_all")], "<= 500 ms"),
    ("lock_uncontended", "lock+unlock, uncontended (1 thread)", "lock_uncontended",
     [("pthread_mutex (1 thread)", "pthread_mutex_uncontended")], "~1x pthread"),
    ("lock_uncontended_mt", "lock+unlock, uncontended (multi-threaded process)", "lock_uncontended_mt",
     [("pthread_mutex (multi-threaded)", "pthread_mutex_uncontended_mt")], "~1x pthread"),
    ("lock_handoff", "contended lock hand-off, 2 coroutines", "lock_handoff",
     [("Go sync.Mutex + Gosched (GOMAXPROCS=1)", "go_mutex_handoff")], "faster than Go"),
    ("lock_handoff_fp", "contended lock hand-off, with FP work", "lock_handoff_fp",
     [("same, without FP work", "lock_handoff")], "= lock_handoff"),
    ("queue_pingpong", "queue ping-pong, 2 coroutines of one hub", "queue_pingpong",
     [("Go unbuffered chan (GOMAXPROCS=1)", "go_chan_unbuffered_pingpong"),
      ("Go buffered chan (GOMAXPROCS=1)", "go_chan_buffered_pingpong"),
      ("gevent Queue", "gevent_queue_pingpong"), ("asyncio Queue", "asyncio_queue_pingpong"),
      ("uvloop + asyncio Queue", "uvloop_queue_pingpong")], "<= 60 ns, faster than Go"),
    ("queue_pingpong_fp", "queue ping-pong, with FP work", "queue_pingpong_fp",
     [("same, without FP work", "queue_pingpong")], "= queue_pingpong"),
    ("queue_threads", "cross-thread queue, producer + consumer thread", "queue_threads",
     [("Go chan 1024 (GOMAXPROCS=2)", "go_chan_threads"), ("pthread mutex+condvar ring", "pthread_queue_threads")],
     "ahead of both (higher is better)"),
    ("queue_hubs", "cross-thread queue, coroutines on two hubs", "queue_hubs",
     [("Go chan 1024 (GOMAXPROCS=2)", "go_chan_threads"), ("pthread mutex+condvar ring", "pthread_queue_threads")],
     "ahead of both (higher is better)"),
    ("queue_hubs_fp", "cross-thread queue on two hubs, with FP work", "queue_hubs_fp",
     [("same, without FP work", "queue_hubs")], "= queue_hubs"),
    ("pool_rtt_thread", "thread pool: submit -> result, one at a time, from a thread", "pool_rtt_thread",
     [("Go goroutine + channel (GOMAXPROCS=2)", "go_pool_rtt"), ("libuv uv_queue_work (2 threads)", "uv_pool_rtt"),
      ("Boost.Asio thread_pool(2) + std::future", "asio_pool_rtt"), ("Python ThreadPoolExecutor(2)", "py_pool_rtt")],
     "lowest of all"),
    ("pool_rtt_coro", "thread pool: submit -> result, one at a time, from a coroutine", "pool_rtt_coro",
     [("Go goroutine + channel (GOMAXPROCS=2)", "go_pool_rtt"), ("libuv uv_queue_work (2 threads)", "uv_pool_rtt"),
      ("Boost.Asio thread_pool(2) + std::future", "asio_pool_rtt"), ("Python ThreadPoolExecutor(2)", "py_pool_rtt")],
     "lowest of all"),
    ("pool_throughput", "thread pool: 1M trivial tasks, 2 workers, one submitter", "pool_throughput",
     [("Go, 2 worker goroutines + channels", "go_pool_throughput"),
      ("libuv uv_queue_work (2 threads)", "uv_pool_throughput"),
      ("Boost.Asio thread_pool(2) + std::future", "asio_pool_throughput"),
      ("Python ThreadPoolExecutor(2)", "py_pool_throughput")], ">= Go, >= 2x libuv (higher is better)"),
    ("cpu_speedup_threads", "CPU-bound job on 2 threads vs 1 (examples/gil_lesson.c)", "cpu_speedup_threads",
     [("the same job split over coroutines of one hub", "cpu_speedup_coroutines")], ">= 1.9x"),
    ("proc_start_join", "process start (a function) + exit + join", "proc_start_join",
     [("raw fork + _exit + waitpid (floor)", "fork_floor"), ("Python multiprocessing.Process (fork)", "py_proc_start_join")],
     ""),
    ("proc_exec_join", "program start (/bin/true) + join", "proc_exec_join",
     [("posix_spawn + waitpid (floor)", "posix_spawn_true")], "~ posix_spawn"),
    ("pipe_pingpong", "pipe ping-pong between two processes, 64 B", "pipe_pingpong",
     [("raw pipe pair (floor)", "pipe_floor"), ("Python multiprocessing.Pipe", "py_pipe_pingpong")], ""),
    ("pqueue_64", "process queue, 1 producer -> 1 consumer process, 64 B", "pqueue_64",
     [("raw pipe, 64 B writes", "rawpipe_64"), ("POSIX mq_send/mq_receive", "mq_64"),
      ("Python multiprocessing.Queue", "py_queue_64")], ">= 0.5x raw pipe, >= 20x Python (higher is better)"),
    ("pqueue_4k", "process queue, 1 producer -> 1 consumer process, 4 KiB", "pqueue_4k",
     [("raw pipe, 4 KiB writes", "rawpipe_4k"), ("POSIX mq_send/mq_receive", "mq_4k"),
      ("Python multiprocessing.Queue", "py_queue_4k")], ">= 0.5x raw pipe, >= 20x Python (higher is better)"),
    ("procpool_map", "process pool map, 100k tiny tasks, 2 workers", "procpool_map",
     [("Python Pool(2).map", "py_pool_map"), ("Python ProcessPoolExecutor(2).map", "py_ppe_map")],
     ">= 50x Python (higher is better)"),
    ("procpool_apply_rtt", "process pool submit -> result, one at a time", "procpool_apply_rtt",
     [("Python ProcessPoolExecutor(2) submit+result", "py_ppe_rtt")], ""),
    ("procpool_speedup", "process pool: CPU-bound map on 2 workers vs 1", "procpool_speedup",
     [("threads, same kind of job (gil_lesson)", "cpu_speedup_threads")], ">= 1.9x"),
    ("procpool_crash", "process pool: worker SIGKILLed -> its future failed, both workers serving", "procpool_crash",
     [], "no hang"),
    ("alive_rss", "1M alive: RSS per coroutine", "alive_rss", [("Go (1M goroutines)", "go_alive_rss"),
      ("gevent (200k, per coroutine)", "gevent_alive_rss")], "<= 4.5 KiB"),
    ("alive_compact_rss", "1M alive, compact: RSS per coroutine", "alive_compact_rss",
     [("same, stacks of their own", "alive_rss"), ("Go (1M goroutines)", "go_alive_rss"),
      ("asyncio (1M tasks, no stacks)", "asyncio_alive_rss")], "<= 1.5 KiB"),
    ("alive_compact_spawn", "1M alive, compact: time to spawn all", "alive_compact_spawn",
     [("same, stacks of their own", "alive_spawn"), ("Go (1M goroutines)", "go_alive_spawn"),
      ("asyncio (1M tasks)", "asyncio_alive_spawn")], ""),
    ("alive_spawn", "1M alive: time to spawn all", "alive_spawn", [("Go (1M goroutines)", "go_alive_spawn"),
      ("gevent (200k, scaled to 1M)", "gevent_alive_spawn")], "<= 1000 ms"),
]
results = []
lines_instr = ["", "| instructions per operation (callgrind) | count |", "|---|---|"]
lines = ["| figure | cogent | peer | peer value | cogent's lead |", "|---|---|---|---|---|"]
print()
for key, label, ours, peers, goal in figures:
    if ours not in med:
        continue
    entry = {"name": key, "label": label, "value": med[ours], "unit": units[ours], "goal": goal,
             "runs": vals[ours], "peers": {}}
    print(f"{label}: cogent {med[ours]:.2f} {units[ours]}   (goal {goal})")
    first = True
    for plabel, pname in peers:
        if pname not in med:
            continue
        # "lead": how many times better cogent is (> 1: ahead), whether
        # the unit is a time (lower is better) or a rate (higher is).
        if units[ours].endswith("/s") or units[ours] == "x":
            ratio = med[ours] / med[pname] if med[pname] else float("nan")
        else:
            ratio = med[pname] / med[ours] if med[ours] else float("nan")
        entry["peers"][plabel] = {"value": med[pname], "unit": units[pname], "ratio": ratio}
        print(f"    {plabel:32s} {med[pname]:12.2f} {units[pname]:14s} cogent lead = {ratio:.2f}x")
        lines.append(f"| {label if first else ''} | {f'{med[ours]:.2f} {units[ours]}' if first else ''} | {plabel} | {med[pname]:.2f} | {ratio:.2f}x |")
        first = False
    results.append(entry)
for key, label in (("spawn_join_instr", "spawn + run + join"), ("queue_pingpong_instr", "queue ping-pong round trip"),
                   ("lock_handoff_instr", "contended lock hand-off")):
    if key in med:
        print(f"instructions per {label}: {med[key]:.0f} (callgrind)")
        lines_instr.append(f"| {label} | {med[key]:.0f} |")
if "alive_pte" in med:
    print(f"1M alive: page tables {med['alive_pte']:.0f} B/coroutine (kernel memory, not in RSS)")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
meta = {"date": datetime.date.today().isoformat(), "cpu": cpu, "kernel": platform.release(),
        "cores": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()}
json.dump({"machine": meta, "figures": results}, open(f"{out}/results.json", "w"), indent=2)
open(f"{out}/table.md", "w").write(
    f"Measured {meta['date']} on {meta['cpu']} ({meta['cores']} cores), Linux {meta['kernel']}; medians.\n\n"
    + "\n".join(lines + (lines_instr if len(lines_instr) > 3 else [])) + "\n")
print(f"\nwrote {out}/results.json and {out}/table.md")
PY

# The echo benchmark (servers against a load generator): its own table.
if [ "${SKIP_ECHO:-0}" != 1 ]; then "$here/echo.sh" "$build"; fi
if [ "${SKIP_HTTP:-0}" != 1 ]; then "$here/http.sh" "$build"; "$here/tls_echo.sh" "$build"; fi
