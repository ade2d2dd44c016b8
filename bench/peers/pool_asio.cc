// Boost.Asio peer of bench/pool.c: boost::asio::thread_pool of 2 threads,
// a task posted with boost::asio::post and its result handed back through
// a std::promise / std::future (the standard library's future).
//   pool_rtt         post one task, wait on its future, then the next
//   pool_throughput  batches of 10,000 tasks posted, then every future
//                    taken in order
// Prints "RESULT <name> <value> <unit>" as ours do.
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <vector>

static long trivial(long x)
{
    return x + 1;
}

static double now_ns()
{
    return (double)std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

static std::future<long> submit(boost::asio::thread_pool &pool, long x)
{
    auto p = std::make_shared<std::promise<long>>();
    std::future<long> f = p->get_future();
    boost::asio::post(pool, [p, x] { p->set_value(trivial(x)); });
    return f;
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "all";
    long count = argc > 2 ? atol(argv[2]) : 0;
    bool all = !strcmp(what, "all");
    boost::asio::thread_pool pool(2);
    if (all || !strcmp(what, "pool_rtt")) {
        long n = count ? count : 100000;
        for (long i = 0; i < 1000; i++) submit(pool, i).get();
        double t0 = now_ns();
        for (long i = 0; i < n; i++)
            if (submit(pool, i).get() != i + 1) abort();
        printf("RESULT asio_pool_rtt %.3f ns/roundtrip\n", (now_ns() - t0) / (double)n);
    }
    if (all || !strcmp(what, "pool_throughput")) {
        const long batch = 10000;
        long n = count ? count : 1000000;
        std::vector<std::future<long>> fs(batch);
        double t0 = now_ns();
        for (long done = 0; done < n; done += batch) {
            for (long i = 0; i < batch; i++) fs[i] = submit(pool, done + i);
            for (long i = 0; i < batch; i++)
                if (fs[i].get() != done + i + 1) abort();
        }
        double dt = now_ns() - t0;
        printf("RESULT asio_pool_throughput %.3f tasks/s\n", (double)n / (dt / 1e9));
    }
    pool.join();
    return 0;
}
