"""Python peers for bench/: greenlet, gevent and asyncio (uvloop when
installed).  One figure per sub-command; prints "RESULT <name> <value> <unit>"
like ours.  Run with Debian's /usr/bin/python3."""
import gc
import sys
import time


def result(name, value, unit):
    print(f"RESULT {name} {value:.3f} {unit}", flush=True)


def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def greenlet_switch(n):
    from greenlet import greenlet, getcurrent
    main = getcurrent()

    def pong(v):
        while True:
            v = main.switch(v)

    g = greenlet(pong)
    g.switch(0)
    t0 = time.perf_counter_ns()
    for i in range(n):
        g.switch(i)
    dt = time.perf_counter_ns() - t0
    result("greenlet_switch", dt / (2 * n), "ns/switch")


def gevent_yield(n):
    import gevent

    def yielder():
        for _ in range(n):
            gevent.sleep(0)

    t0 = time.perf_counter_ns()
    gevent.joinall([gevent.spawn(yielder), gevent.spawn(yielder)])
    dt = time.perf_counter_ns() - t0
    result("gevent_yield", dt / n, "ns/roundtrip")


def gevent_spawn(n):
    import gevent

    def trivial(i):
        return i

    t0 = time.perf_counter_ns()
    for _ in range(n // 100):
        gevent.joinall([gevent.spawn(trivial, i) for i in range(100)])
    dt = time.perf_counter_ns() - t0
    result("gevent_spawn_join", dt / n, "ns/coroutine")


def gevent_spawn_all(sizes):
    import gevent

    def trivial(i):
        return i

    for n in sizes:
        t0 = time.perf_counter_ns()
        gevent.joinall([gevent.spawn(trivial, i) for i in range(n)])
        result(f"gevent_spawn_all_{n}", (time.perf_counter_ns() - t0) / n, "ns/coroutine")


def asyncio_spawn_all(sizes, loop_kind):
    import asyncio

    async def trivial(i):
        return i

    async def main(n):
        t0 = time.perf_counter_ns()
        await asyncio.gather(*[asyncio.create_task(trivial(i)) for i in range(n)])
        return time.perf_counter_ns() - t0

    for n in sizes:
        result(f"{loop_kind}_spawn_all_{n}", asyncio_run(main(n), loop_kind) / n, "ns/coroutine")


def gevent_alive(n):
    import gevent
    from gevent.event import Event
    gc.collect()
    rss0 = rss_kb()
    ev = Event()
    t0 = time.perf_counter_ns()
    gs = []
    for i in range(n):
        gs.append(gevent.spawn(ev.wait) if i & 1 else gevent.spawn(gevent.sleep, 3600))
    gevent.sleep(0)  # run them all until they block
    dt = time.perf_counter_ns() - t0
    result("gevent_alive_rss", (rss_kb() - rss0) / n, "KiB/coroutine")
    result("gevent_alive_spawn", dt / 1e6 * (1000000 / n), "ms")


def asyncio_alive(n):
    # Tasks hold no stack (a coroutine frame on the heap): the peer for
    # compact coroutines.  Half sleep, half wait on an event, as alive.c.
    import asyncio

    async def main():
        ev = asyncio.Event()
        gc.collect()
        rss0 = rss_kb()
        t0 = time.perf_counter_ns()
        ts = [asyncio.ensure_future(ev.wait() if i & 1 else asyncio.sleep(3600)) for i in range(n)]
        await asyncio.sleep(0)  # run them all until they block
        dt = time.perf_counter_ns() - t0
        result("asyncio_alive_rss", (rss_kb() - rss0) / n, "KiB/coroutine")
        result("asyncio_alive_spawn", dt / 1e6 * (1000000 / n), "ms")
        for t in ts:
            t.cancel()
        await asyncio.gather(*ts, return_exceptions=True)

    asyncio.run(main())


def asyncio_run(coro, loop_kind):
    import asyncio
    if loop_kind == "uvloop":
        import uvloop
        return uvloop.run(coro) if hasattr(uvloop, "run") else uvloop.install() or asyncio.run(coro)
    return asyncio.run(coro)


def asyncio_yield(n, loop_kind):
    import asyncio

    async def yielder():
        for _ in range(n):
            await asyncio.sleep(0)

    async def main():
        t0 = time.perf_counter_ns()
        await asyncio.gather(yielder(), yielder())
        return time.perf_counter_ns() - t0

    dt = asyncio_run(main(), loop_kind)
    result(f"{loop_kind}_yield", dt / n, "ns/roundtrip")


def asyncio_spawn(n, loop_kind):
    import asyncio

    async def trivial(i):
        return i

    async def main():
        t0 = time.perf_counter_ns()
        for _ in range(n // 100):
            await asyncio.gather(*[asyncio.create_task(trivial(i)) for i in range(100)])
        return time.perf_counter_ns() - t0

    dt = asyncio_run(main(), loop_kind)
    result(f"{loop_kind}_spawn_join", dt / n, "ns/coroutine")


def gevent_queue_pingpong(n):
    import gevent
    from gevent.queue import Queue
    ping, pong = Queue(), Queue()

    def answerer():
        while True:
            v = ping.get()
            if v is None:
                return
            pong.put(v)

    a = gevent.spawn(answerer)
    t0 = time.perf_counter_ns()
    for i in range(n):
        ping.put(i)
        pong.get()
    dt = time.perf_counter_ns() - t0
    ping.put(None)
    a.join()
    result("gevent_queue_pingpong", dt / n, "ns/roundtrip")


def asyncio_queue_pingpong(n, loop_kind):
    import asyncio

    async def main():
        ping, pong = asyncio.Queue(), asyncio.Queue()

        async def answerer():
            while True:
                v = await ping.get()
                if v is None:
                    return
                await pong.put(v)

        a = asyncio.create_task(answerer())
        t0 = time.perf_counter_ns()
        for i in range(n):
            await ping.put(i)
            await pong.get()
        dt = time.perf_counter_ns() - t0
        await ping.put(None)
        await a
        return dt

    dt = asyncio_run(main(), loop_kind)
    result(f"{loop_kind}_queue_pingpong", dt / n, "ns/roundtrip")


def tpe_rtt(n):
    """concurrent.futures.ThreadPoolExecutor(2): submit -> result, one at a time."""
    from concurrent.futures import ThreadPoolExecutor

    def trivial(x):
        return x + 1

    with ThreadPoolExecutor(max_workers=2) as ex:
        for i in range(1000):
            ex.submit(trivial, i).result()
        t0 = time.perf_counter_ns()
        for i in range(n):
            if ex.submit(trivial, i).result() != i + 1:
                raise SystemExit("wrong result")
        dt = time.perf_counter_ns() - t0
    result("py_pool_rtt", dt / n, "ns/roundtrip")


def tpe_throughput(n):
    """The same pool: batches of 10,000 submitted, then every result in order."""
    from concurrent.futures import ThreadPoolExecutor

    def trivial(x):
        return x + 1

    batch = 10000
    with ThreadPoolExecutor(max_workers=2) as ex:
        t0 = time.perf_counter_ns()
        for done in range(0, n, batch):
            fs = [ex.submit(trivial, done + i) for i in range(batch)]
            for i, f in enumerate(fs):
                if f.result() != done + i + 1:
                    raise SystemExit("wrong result")
        dt = time.perf_counter_ns() - t0
    result("py_pool_throughput", n / (dt / 1e9), "tasks/s")


if __name__ == "__main__":
    what = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    if what == "greenlet_switch":
        greenlet_switch(n or 1000000)
    elif what == "gevent_yield":
        gevent_yield(n or 200000)
    elif what == "gevent_spawn":
        gevent_spawn(n or 200000)
    elif what == "gevent_spawn_all":
        gevent_spawn_all([1000, 10000, 100000, 1000000])
    elif what in ("asyncio_spawn_all", "uvloop_spawn_all"):
        asyncio_spawn_all([1000, 10000, 100000, 1000000], what.split("_")[0])
    elif what == "gevent_alive":
        gevent_alive(n or 200000)
    elif what == "asyncio_alive":
        asyncio_alive(n or 1000000)
    elif what in ("asyncio_yield", "uvloop_yield"):
        asyncio_yield(n or 200000, what.split("_")[0])
    elif what in ("asyncio_spawn", "uvloop_spawn"):
        asyncio_spawn(n or 200000, what.split("_")[0])
    elif what == "gevent_queue_pingpong":
        gevent_queue_pingpong(n or 100000)
    elif what in ("asyncio_queue_pingpong", "uvloop_queue_pingpong"):
        asyncio_queue_pingpong(n or 100000, what.split("_")[0])
    elif what == "pool_rtt":
        tpe_rtt(n or 20000)
    elif what == "pool_throughput":
        tpe_throughput(n or 200000)
    else:
        sys.exit(f"unknown benchmark {what}")
