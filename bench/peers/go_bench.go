// Go peers for bench/: run with GOMAXPROCS=1.  One program, one figure per
// sub-command; prints "RESULT <name> <value> <unit>" like ours.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

func arg(i int, d int) int {
	if len(os.Args) > i {
		if v, err := strconv.Atoi(os.Args[i]); err == nil {
			return v
		}
	}
	return d
}

// Two goroutines alternating with runtime.Gosched: ns per switch.
func gosched(n int) {
	var wg sync.WaitGroup
	wg.Add(2)
	t0 := time.Now()
	for g := 0; g < 2; g++ {
		go func() {
			for i := 0; i < n; i++ {
				runtime.Gosched()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	dt := time.Since(t0)
	fmt.Printf("RESULT go_gosched_switch %.3f ns/switch\n", float64(dt.Nanoseconds())/float64(2*n))
	fmt.Printf("RESULT go_gosched_roundtrip %.3f ns/roundtrip\n", float64(dt.Nanoseconds())/float64(n))
}

// go func + WaitGroup, batches of 100 like bench/spawn_join.c.
func spawn(n int) {
	const batch = 100
	var sink int64
	var mu sync.Mutex
	t0 := time.Now()
	for done := 0; done < n; done += batch {
		var wg sync.WaitGroup
		wg.Add(batch)
		for i := 0; i < batch; i++ {
			go func(i int) {
				if i < 0 {
					mu.Lock()
					sink++
					mu.Unlock()
				}
				wg.Done()
			}(i)
		}
		wg.Wait()
	}
	dt := time.Since(t0)
	fmt.Printf("RESULT go_spawn_join %.3f ns/coroutine\n", float64(dt.Nanoseconds())/float64(n))
}

// The shapes users write: n goroutines started first, then all waited for.
func spawnAll(sizes []int) {
	for _, n := range sizes {
		var wg sync.WaitGroup
		wg.Add(n)
		t0 := time.Now()
		for i := 0; i < n; i++ {
			go func() { wg.Done() }()
		}
		wg.Wait()
		dt := time.Since(t0)
		fmt.Printf("RESULT go_spawn_all_%d %.3f ns/coroutine\n", n, float64(dt.Nanoseconds())/float64(n))
	}
}

// n goroutines blocked on one channel, then released at once and waited for.
func releaseAll(n int) {
	gate := make(chan struct{})
	var started, done sync.WaitGroup
	started.Add(n)
	done.Add(n)
	for i := 0; i < n; i++ {
		go func() { started.Done(); <-gate; done.Done() }()
	}
	started.Wait()
	t0 := time.Now()
	close(gate)
	done.Wait()
	dt := time.Since(t0)
	fmt.Printf("RESULT go_release_all %.3f ms\n", float64(dt.Nanoseconds())/1e6)
}

func statusKB(key string) int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, key+":") {
			f := strings.Fields(l[len(key)+1:])
			v, _ := strconv.ParseInt(f[0], 10, 64)
			return v
		}
	}
	return -1
}

// n goroutines blocked at once: half sleeping, half waiting on a channel.
func alive(n int) {
	rss0 := statusKB("VmRSS")
	gate := make(chan struct{})
	t0 := time.Now()
	var started sync.WaitGroup
	started.Add(n)
	for i := 0; i < n; i++ {
		if i&1 == 1 {
			go func() { started.Done(); <-gate }()
		} else {
			go func() { started.Done(); time.Sleep(time.Hour) }()
		}
	}
	started.Wait()
	dt := time.Since(t0)
	runtime.GC()
	rss := statusKB("VmRSS")
	fmt.Printf("RESULT go_alive_rss %.3f KiB/coroutine\n", float64(rss-rss0)/float64(n))
	fmt.Printf("RESULT go_alive_spawn %.3f ms\n", float64(dt.Nanoseconds())/1e6)
	os.Exit(0)
}

// Two goroutines passing a sync.Mutex: each holds it across a Gosched,
// so every acquisition waits for the other's release.  ns per hand-off.
func mutexHandoff(n int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Add(2)
	t0 := time.Now()
	for g := 0; g < 2; g++ {
		go func() {
			for i := 0; i < n; i++ {
				mu.Lock()
				runtime.Gosched()
				mu.Unlock()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	fmt.Printf("RESULT go_mutex_handoff %.3f ns/handoff\n", float64(time.Since(t0).Nanoseconds())/float64(2*n))
}

// Ping-pong over two channels of capacity c: ns per round trip.
func chanPingpong(n, c int, name string) {
	ping, pong := make(chan int, c), make(chan int, c)
	go func() {
		for v := range ping {
			pong <- v
		}
	}()
	t0 := time.Now()
	for i := 0; i < n; i++ {
		ping <- i
		<-pong
	}
	dt := time.Since(t0)
	close(ping)
	fmt.Printf("RESULT %s %.3f ns/roundtrip\n", name, float64(dt.Nanoseconds())/float64(n))
}

// One producer goroutine, one consumer, a channel of 1024: items/s (run
// with GOMAXPROCS=2 so that they run on two threads).
func chanThroughput(n int) {
	ch := make(chan int, 1024)
	t0 := time.Now()
	go func() {
		for i := 1; i <= n; i++ {
			ch <- i
		}
	}()
	sum := 0
	for i := 0; i < n; i++ {
		sum += <-ch
	}
	dt := time.Since(t0)
	if sum != n*(n+1)/2 {
		os.Exit(1)
	}
	fmt.Printf("RESULT go_chan_threads %.0f items/s\n", float64(n)/dt.Seconds())
}

// The thread pool figures' peer (run with GOMAXPROCS=2).  Round trip:
// one goroutine per task handing its result back on a channel, waited for
// before the next (Go's idiom for "run this concurrently and give me the
// result").
func poolRtt(n int) {
	trivial := func(x int) int { return x + 1 }
	for i := 0; i < 1000; i++ { // warm-up, as ours
		ch := make(chan int, 1)
		go func(x int) { ch <- trivial(x) }(i)
		<-ch
	}
	t0 := time.Now()
	for i := 0; i < n; i++ {
		ch := make(chan int, 1)
		go func(x int) { ch <- trivial(x) }(i)
		if <-ch != i+1 {
			panic("wrong result")
		}
	}
	dt := time.Since(t0)
	fmt.Printf("RESULT go_pool_rtt %.3f ns/roundtrip\n", float64(dt.Nanoseconds())/float64(n))
}

// Throughput through a pool of 2 worker goroutines reading a task
// channel, each task with a one-slot result channel as its future;
// submitted in batches of 10,000 whose results are taken in order, as
// bench/pool.c does.
type goTask struct {
	x    int
	done chan int
}

func poolThroughput(n int) {
	const batch = 10000
	tasks := make(chan goTask, 1024)
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			for t := range tasks {
				t.done <- t.x + 1
			}
			wg.Done()
		}()
	}
	futs := make([]chan int, batch)
	t0 := time.Now()
	for done := 0; done < n; done += batch {
		for i := 0; i < batch; i++ {
			futs[i] = make(chan int, 1)
			tasks <- goTask{done + i, futs[i]}
		}
		for i := 0; i < batch; i++ {
			if <-futs[i] != done+i+1 {
				panic("wrong result")
			}
		}
	}
	dt := time.Since(t0)
	close(tasks)
	wg.Wait()
	fmt.Printf("RESULT go_pool_throughput %.3f tasks/s\n", float64(n)/dt.Seconds())
}

func main() {
	switch os.Args[1] {
	case "pool_rtt":
		poolRtt(arg(2, 100000))
	case "pool_throughput":
		poolThroughput(arg(2, 1000000))
	case "mutex_handoff":
		mutexHandoff(arg(2, 2000000))
	case "chan_pingpong":
		chanPingpong(arg(2, 2000000), 0, "go_chan_unbuffered_pingpong")
		chanPingpong(arg(2, 2000000), 1, "go_chan_buffered_pingpong")
	case "chan_threads":
		chanThroughput(arg(2, 2000000))
	case "gosched":
		gosched(arg(2, 5000000))
	case "spawn":
		spawn(arg(2, 1000000))
	case "spawn_all":
		spawnAll([]int{1000, 10000, 100000, 1000000})
	case "release_all":
		releaseAll(arg(2, 1000000))
	case "alive":
		alive(arg(2, 1000000))
	}
}
