// Go twin of bench/selector_bench.cpp: a select over channels known only at
// run time, with reflect.Select, so that bench/compare.py can print
// weft/Go ratios measured side by side.
// Usage: go run . -bench selector -cap N -procs N
// Prints one line: RESULT selector ns_per_wait=<value>
package main

import (
	"flag"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"time"
)

const (
	nChans = 64
	msgs   = 200000
)

// One consumer waits with reflect.Select on 64 recv cases; one producer
// sends 0..msgs-1, each to a channel picked by xorshift64 (the same
// generator and seed as the C++ side).
func selector(capacity int) {
	chs := make([]chan int, nChans)
	cases := make([]reflect.SelectCase, nChans)
	for i := range chs {
		chs[i] = make(chan int, capacity)
		cases[i] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(chs[i])}
	}
	t0 := time.Now()
	go func() {
		x := uint64(88172645463325252)
		for i := 0; i < msgs; i++ {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			chs[x%nChans] <- i
		}
	}()
	sum := 0
	for i := 0; i < msgs; i++ {
		_, v, _ := reflect.Select(cases)
		sum += int(v.Int())
	}
	el := time.Since(t0)
	if sum != msgs*(msgs-1)/2 {
		panic("bad sum")
	}
	fmt.Printf("RESULT selector ns_per_wait=%.2f\n", float64(el.Nanoseconds())/msgs)
}

func main() {
	bench := flag.String("bench", "", "selector")
	capacity := flag.Int("cap", 0, "channel capacity")
	procs := flag.Int("procs", 1, "GOMAXPROCS")
	flag.Parse()
	runtime.GOMAXPROCS(*procs)
	switch *bench {
	case "selector":
		selector(*capacity)
	default:
		fmt.Fprintln(os.Stderr, "unknown -bench", *bench)
		os.Exit(2)
	}
}
