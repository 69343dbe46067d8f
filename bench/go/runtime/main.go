// Go twins of bench/runtime_bench.cpp: the same workloads with goroutines,
// so that bench/compare.py can print weft/Go ratios measured side by side.
// Usage: go run . -bench spawn|yield|parked_cond|parked_sleep|mutex|waitgroup -procs N
// Prints one line: RESULT <bench> <counter>=<value> [...]
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"runtime"
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
	default:
		fmt.Fprintln(os.Stderr, "unknown -bench", *bench)
		os.Exit(2)
	}
}
