// Go twins of bench/runtime_bench.cpp: the same workloads with goroutines,
// so that bench/compare.py can print weft/Go ratios measured side by side.
// Usage: go run . -bench spawn|yield|parked_cond|parked_sleep|mutex|waitgroup|scope|cancel_latency -procs N
// Prints one line: RESULT <bench> <counter>=<value> [...]
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

func statusKiB(key string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), key) {
			v, _ := strconv.ParseInt(strings.Fields(s.Text()[len(key):])[0], 10, 64)
			return v
		}
	}
	return -1
}

func residentKiB() int64 { return statusKiB("VmRSS:") + statusKiB("VmPTE:") }

func spawn() {
	const n = 1000000
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() { wg.Done() }()
	}
	wg.Wait()
	fmt.Printf("RESULT spawn ns_per_fiber=%.2f\n", float64(time.Since(t0).Nanoseconds())/n)
}

func yield() {
	const n = 5000000
	t0 := time.Now()
	var wg sync.WaitGroup
	for j := 0; j < 2; j++ {
		wg.Add(1)
		go func() {
			for i := 0; i < n; i++ {
				runtime.Gosched()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	fmt.Printf("RESULT yield ns_per_switch=%.2f\n", float64(time.Since(t0).Nanoseconds())/(2*n))
}

func parkedCond() {
	const n = 1000000
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	ready := false
	parked := 0
	var done sync.WaitGroup
	before := residentKiB()
	t0 := time.Now()
	for i := 0; i < n; i++ {
		done.Add(1)
		go func() {
			mu.Lock()
			parked++
			for !ready {
				cond.Wait()
			}
			mu.Unlock()
			done.Done()
		}()
	}
	// Wait until every goroutine is in cond.Wait (as weft's child-first
	// spawn guarantees when its spawn loop ends): parked is counted under mu,
	// which Wait releases.
	for {
		mu.Lock()
		all := parked == n
		mu.Unlock()
		if all {
			break
		}
		time.Sleep(time.Millisecond)
	}
	secs := time.Since(t0).Seconds()
	bytes := float64(residentKiB()-before) * 1024 / n
	mu.Lock()
	ready = true
	mu.Unlock()
	cond.Broadcast()
	done.Wait()
	fmt.Printf("RESULT parked_cond bytes_per_fiber=%.1f spawn_s=%.3f\n", bytes, secs)
}

func parkedSleep() {
	const n = 1000000
	before := residentKiB()
	t0 := time.Now()
	var started sync.WaitGroup
	started.Add(n)
	for i := 0; i < n; i++ {
		go func() { started.Done(); time.Sleep(time.Hour) }()
	}
	started.Wait()
	secs := time.Since(t0).Seconds()
	bytes := float64(residentKiB()-before) * 1024 / n
	fmt.Printf("RESULT parked_sleep bytes_per_fiber=%.1f spawn_s=%.3f\n", bytes, secs)
}

func mutex() {
	const fibers, ops = 8, 1000000
	var mu sync.Mutex
	counter := 0
	t0 := time.Now()
	var wg sync.WaitGroup
	for f := 0; f < fibers; f++ {
		wg.Add(1)
		go func() {
			for i := 0; i < ops; i++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	if counter != fibers*ops {
		panic("lost updates")
	}
	fmt.Printf("RESULT mutex ns_per_lock=%.2f\n", float64(time.Since(t0).Nanoseconds())/(fibers*ops))
}

func waitgroup() {
	const rounds, fanout = 10000, 100
	t0 := time.Now()
	for r := 0; r < rounds; r++ {
		var wg sync.WaitGroup
		wg.Add(fanout)
		for i := 0; i < fanout; i++ {
			go func() { wg.Done() }()
		}
		wg.Wait()
	}
	fmt.Printf("RESULT waitgroup ns_per_fiber=%.2f\n", float64(time.Since(t0).Nanoseconds())/(rounds*fanout))
}

// errgroup.WithContext semantics without the module: a WaitGroup, a
// first-error Once and a cancellable context per group.
type group struct {
	wg      sync.WaitGroup
	errOnce sync.Once
	err     error
	cancel  context.CancelFunc
}

func withContext(parent context.Context) (*group, context.Context) {
	ctx, cancel := context.WithCancel(parent)
	return &group{cancel: cancel}, ctx
}

func (g *group) Go(f func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := f(); err != nil {
			g.errOnce.Do(func() {
				g.err = err
				g.cancel()
			})
		}
	}()
}

func (g *group) Wait() error {
	g.wg.Wait()
	g.cancel()
	return g.err
}

func scope() {
	const groups, children = 1000, 1000
	t0 := time.Now()
	for r := 0; r < groups; r++ {
		g, _ := withContext(context.Background())
		for i := 0; i < children; i++ {
			g.Go(func() error { return nil })
		}
		if err := g.Wait(); err != nil {
			panic(err)
		}
	}
	fmt.Printf("RESULT scope ns_per_child=%.2f\n", float64(time.Since(t0).Nanoseconds())/(groups*children))
}

// Go's cancellation is a context: each goroutine waits in a select on its
// context's Done channel and a channel that never delivers.
func cancelLatency() {
	const n = 10000
	never := make(chan int)
	cancels := make([]context.CancelFunc, n)
	handled := make([]time.Time, n)
	done := make([]chan struct{}, n)
	var parked sync.WaitGroup
	parked.Add(n)
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		cancels[i] = cancel
		done[i] = make(chan struct{})
		go func(i int, ctx context.Context) {
			parked.Done()
			select {
			case <-never:
			case <-ctx.Done():
				handled[i] = time.Now()
			}
			close(done[i])
		}(i, ctx)
	}
	parked.Wait()
	time.Sleep(time.Millisecond)
	lat := make([]float64, n)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		cancels[i]()
		<-done[i]
		lat[i] = float64(handled[i].Sub(t0).Nanoseconds())
	}
	sort.Float64s(lat)
	fmt.Printf("RESULT cancel_latency median_ns=%.1f p99_ns=%.1f\n", lat[n/2], lat[n*99/100])
}

func main() {
	bench := flag.String("bench", "spawn", "workload")
	procs := flag.Int("procs", 1, "GOMAXPROCS")
	flag.Parse()
	runtime.GOMAXPROCS(*procs)
	switch *bench {
	case "spawn":
		spawn()
	case "yield":
		yield()
	case "parked_cond":
		parkedCond()
	case "parked_sleep":
		parkedSleep()
	case "mutex":
		mutex()
	case "waitgroup":
		waitgroup()
	case "scope":
		scope()
	case "cancel_latency":
		cancelLatency()
	default:
		fmt.Fprintln(os.Stderr, "unknown -bench", *bench)
		os.Exit(2)
	}
}
