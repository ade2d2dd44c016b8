"""aiohttp peer: C tasks share one ClientSession (a TCPConnector limited
to C connections) and fetch N pages between them.

  http_aiohttp.py URL N C [asyncio|uvloop] [--cafile FILE]
"""
import asyncio, json, resource, ssl, sys, time

import aiohttp


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def main(base, total, c, cafile):
    ctx = ssl.create_default_context(cafile=cafile) if cafile else None
    conn = aiohttp.TCPConnector(limit=c, ssl=ctx if ctx else None)
    state = {"next": 0, "done": 0, "failed": 0}
    async with aiohttp.ClientSession(connector=conn) as s:

        async def worker():
            while state["next"] < total:
                i = state["next"]
                state["next"] += 1
                url = base % i if "%d" in base else base
                try:
                    async with s.get(url) as r:
                        await r.read()
                        state["done" if r.status == 200 else "failed"] += 1
                except Exception:
                    state["failed"] += 1

        t0, c0 = time.monotonic(), cpu()
        await asyncio.gather(*(worker() for _ in range(c)))
        dt, dc = time.monotonic() - t0, cpu() - c0
    return state, dt, dc


if __name__ == "__main__":
    base, total, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    loop = sys.argv[4] if len(sys.argv) > 4 and not sys.argv[4].startswith("--") else "asyncio"
    cafile = sys.argv[sys.argv.index("--cafile") + 1] if "--cafile" in sys.argv else None
    if loop == "uvloop":
        import uvloop
        uvloop.install()
    st, dt, dc = asyncio.run(main(base, total, c, cafile))
    print(json.dumps({"impl": "aiohttp" if loop == "asyncio" else "aiohttp-uvloop", "pages": st["done"],
                      "failed": st["failed"], "concurrency": c, "seconds": round(dt, 3),
                      "pages_per_s": round(st["done"] / dt), "cpu_us_per_page": round(dc * 1e6 / max(st["done"], 1), 1)}))
