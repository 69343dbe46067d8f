// Go twins of bench/sync_bench.cpp: the same workloads with goroutines, so
// that bench/compare.py can print weft/Go ratios measured side by side.
// Usage: go run . -bench rwmutex|semaphore -procs N
// Prints one line: RESULT <bench> <counter>=<value>
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// 8 goroutines x 1,000,000 ops, 1 in 100 a write lock (counter++), the
// rest read locks (the counter read).
func rwmutex() {
	const fibers, ops, writeEvery = 8, 1000000, 100
	var mu sync.RWMutex
	counter := 0
	var seen int64
	t0 := time.Now()
	var wg sync.WaitGroup
	for f := 0; f < fibers; f++ {
		wg.Add(1)
		go func() {
			sum := 0
			for i := 0; i < ops; i++ {
				if i%writeEvery == 0 {
					mu.Lock()
					counter++
					mu.Unlock()
				} else {
					mu.RLock()
					sum += counter
					mu.RUnlock()
				}
			}
			atomic.AddInt64(&seen, int64(sum))
			wg.Done()
		}()
	}
	wg.Wait()
	if counter != fibers*(ops/writeEvery) {
		panic("lost updates")
	}
	fmt.Printf("RESULT rwmutex ns_per_op=%.2f\n", float64(time.Since(t0).Nanoseconds())/(fibers*ops))
}

// 100,000 jobs, each a goroutine that acquires a semaphore of 16 (a
// buffered channel, Go's idiom), yields once and releases.
func semaphore() {
	const jobs, limit = 100000, 16
	sem := make(chan struct{}, limit)
	var inside, peak int32
	t0 := time.Now()
	var wg sync.WaitGroup
	wg.Add(jobs)
	for j := 0; j < jobs; j++ {
		go func() {
			sem <- struct{}{}
			now := atomic.AddInt32(&inside, 1)
			if now > atomic.LoadInt32(&peak) {
				atomic.StoreInt32(&peak, now)
			}
			runtime.Gosched()
			atomic.AddInt32(&inside, -1)
			<-sem
			wg.Done()
		}()
	}
	wg.Wait()
	d := time.Since(t0)
	if peak > limit {
		panic("more than limit inside")
	}
	fmt.Printf("RESULT semaphore ns_per_job=%.2f\n", float64(d.Nanoseconds())/jobs)
}

func main() {
	bench := flag.String("bench", "", "rwmutex|semaphore")
	procs := flag.Int("procs", 1, "GOMAXPROCS")
	flag.Parse()
	runtime.GOMAXPROCS(*procs)
	switch *bench {
	case "rwmutex":
		rwmutex()
	case "semaphore":
		semaphore()
	default:
		fmt.Fprintln(os.Stderr, "unknown -bench", *bench)
		os.Exit(2)
	}
}
