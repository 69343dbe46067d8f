// Go twin of bench/timer_bench.cpp: the same workload with goroutines and
// time.Ticker, so that bench/compare.py can print weft/Go ratios measured
// side by side.
// Usage: go run . -bench ticker -procs N
// Prints one line: RESULT <bench> <counter>=<value> [...]
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	tickers = 10000
	warmup  = 200 * time.Millisecond
	window  = 1500 * time.Millisecond
)

func cpuSeconds() float64 {
	var u syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &u)
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)*1e-6 }
	return tv(u.Utime) + tv(u.Stime)
}

type count struct {
	n int64 // written by its goroutine only
	_ [56]byte
}

// 10,000 goroutines, each receiving from its own 1 ms Ticker; CPU time per
// tick received in a 1.5 s window after a 200 ms warm-up. 10,000 ticks a
// millisecond is more than two cores can receive: the run is saturated and
// ticks are dropped (on both sides).
func ticker() {
	counts := make([]count, tickers)
	var stop atomic.Bool
	var wg sync.WaitGroup
	start := make(chan struct{})
	// All goroutines first, then the tickers: once 10,000 tickers run, the
	// machine is saturated and a spawning loop would be starved.
	for i := 0; i < tickers; i++ {
		wg.Add(1)
		go func(c *int64) {
			<-start
			t := time.NewTicker(time.Millisecond)
			for !stop.Load() {
				<-t.C
				atomic.StoreInt64(c, atomic.LoadInt64(c)+1)
			}
			t.Stop()
			wg.Done()
		}(&counts[i].n)
	}
	sum := func() int64 {
		var s int64
		for i := range counts {
			s += atomic.LoadInt64(&counts[i].n)
		}
		return s
	}
	close(start)
	time.Sleep(warmup)
	n0 := sum()
	c0 := cpuSeconds()
	t0 := time.Now()
	time.Sleep(window)
	n1 := sum()
	c1 := cpuSeconds()
	wall := time.Since(t0).Seconds()
	stop.Store(true)
	wg.Wait()
	ticks := float64(n1 - n0)
	if ticks == 0 {
		ticks = 1
	}
	fmt.Printf("RESULT ticker cpu_ns_per_tick=%.2f ticks_per_s=%.0f cpu_util=%.3f\n",
		(c1-c0)*1e9/ticks, float64(n1-n0)/wall, (c1-c0)/wall)
}

func main() {
	bench := flag.String("bench", "ticker", "ticker")
	procs := flag.Int("procs", 1, "GOMAXPROCS")
	flag.Parse()
	runtime.GOMAXPROCS(*procs)
	switch *bench {
	case "ticker":
		ticker()
	default:
		fmt.Fprintln(os.Stderr, "unknown bench", *bench)
		os.Exit(2)
	}
}
