"""Python multiprocessing peers of bench/process.c (fork start method, as
cogent's).  One figure per sub-command; prints "RESULT <name> <value> <unit>"."""
import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor


def result(name, value, unit):
    print(f"RESULT {name} {value:.3f} {unit}", flush=True)


def nothing():
    pass


def start_join(n):
    ctx = mp.get_context("fork")
    t0 = time.perf_counter()
    for _ in range(n):
        p = ctx.Process(target=nothing)
        p.start()
        p.join()
    result("py_proc_start_join", (time.perf_counter() - t0) / n * 1e6, "us/process")


def echo(conn, other):
    other.close()  # the parent's end: its close must reach us as EOF
    try:
        while True:
            conn.send_bytes(conn.recv_bytes())
    except EOFError:
        pass


def pipe_pingpong(n):
    ctx = mp.get_context("fork")
    a, b = ctx.Pipe()
    p = ctx.Process(target=echo, args=(b, a))
    p.start()
    b.close()
    m = b"x" * 64
    for _ in range(1000):
        a.send_bytes(m)
        a.recv_bytes()
    t0 = time.perf_counter()
    for _ in range(n):
        a.send_bytes(m)
        a.recv_bytes()
    dt = time.perf_counter() - t0
    a.close()
    p.join()
    result("py_pipe_pingpong", dt / n * 1e6, "us/roundtrip")


def produce(q, n, size):
    m = b"x" * size
    for _ in range(n):
        q.put(m)


def queue(n, size):
    ctx = mp.get_context("fork")
    q = ctx.Queue(1024)
    t0 = time.perf_counter()
    p = ctx.Process(target=produce, args=(q, n, size))
    p.start()
    for _ in range(n):
        q.get()
    p.join()
    dt = time.perf_counter() - t0
    result("py_queue_64" if size == 64 else "py_queue_4k", n / dt, "msgs/s")


def tiny(x):
    return x * x


def pool_map(n):
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        xs = list(range(n))
        t0 = time.perf_counter()
        r = pool.map(tiny, xs)
        dt = time.perf_counter() - t0
    assert r[-1] == (n - 1) ** 2
    result("py_pool_map", n / dt, "tasks/s")


def ppe_map(n):
    with ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as ex:
        xs = list(range(n))
        t0 = time.perf_counter()
        r = list(ex.map(tiny, xs))
        dt = time.perf_counter() - t0
    assert r[-1] == (n - 1) ** 2
    result("py_ppe_map", n / dt, "tasks/s")


def ppe_rtt(n):
    with ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as ex:
        for _ in range(200):
            ex.submit(tiny, 3).result()
        t0 = time.perf_counter()
        for _ in range(n):
            ex.submit(tiny, 3).result()
        dt = time.perf_counter() - t0
    result("py_ppe_rtt", dt / n * 1e6, "us/roundtrip")


if __name__ == "__main__":
    what = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    if what == "start_join":
        start_join(n or 500)
    elif what == "pipe_pingpong":
        pipe_pingpong(n or 20000)
    elif what == "queue_64":
        queue(n or 100000, 64)
    elif what == "queue_4k":
        queue(n or 50000, 4096)
    elif what == "pool_map":
        pool_map(n or 100000)
    elif what == "ppe_map":
        ppe_map(n or 20000)  # chunksize 1: a round trip per task, slow
    elif what == "ppe_rtt":
        ppe_rtt(n or 2000)
    else:
        sys.exit(f"unknown benchmark {what}")
