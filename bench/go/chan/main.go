// Go twins of bench/chan_bench.cpp: the same channel workloads with
// goroutines, so that bench/compare.py can print weft/Go ratios measured
// side by side.
// Usage: go run . -bench pingpong|mpmc|select|parked_chan -procs N
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

func pingpong() {
	const n = 1000000
	ping, pong := make(chan int), make(chan int)
	done := make(chan bool)
	go func() {
		for i := 0; i < n; i++ {
			pong <- (<-ping) + 1
		}
		done <- true
	}()
	t0 := time.Now()
	v := 0
	for i := 0; i < n; i++ {
		ping <- v
		v = <-pong
	}
	el := time.Since(t0)
	<-done
	fmt.Printf("RESULT pingpong ns_per_roundtrip=%.2f\n", float64(el.Nanoseconds())/n)
}

func mpmc() {
	const items, P, C = 10000000, 4, 4
	ch := make(chan int64, 1024)
	var prod, cons sync.WaitGroup
	var mu sync.Mutex
	var sum int64
	t0 := time.Now()
	for c := 0; c < C; c++ {
		cons.Add(1)
		go func() {
			var s int64
			for v := range ch {
				s += v
			}
			mu.Lock()
			sum += s
			mu.Unlock()
			cons.Done()
		}()
	}
	for p := 0; p < P; p++ {
		prod.Add(1)
		go func() {
			for i := int64(0); i < items/P; i++ {
				ch <- i
			}
			prod.Done()
		}()
	}
	prod.Wait()
	close(ch)
	cons.Wait()
	el := time.Since(t0)
	const per = items / P
	if sum != P*(per*(per-1)/2) {
		panic("bad sum")
	}
	fmt.Printf("RESULT mpmc ns_per_item=%.2f\n", float64(el.Nanoseconds())/items)
}

func selectBench() {
	const msgs = 4000000
	var cs [4]chan int
	for i := range cs {
		cs[i] = make(chan int)
	}
	t0 := time.Now()
	for _, c := range cs {
		go func(c chan int) {
			for i := 0; i < msgs/4; i++ {
				c <- i
			}
		}(c)
	}
	sum := 0
	for i := 0; i < msgs; i++ {
		select {
		case v := <-cs[0]:
			sum += v
		case v := <-cs[1]:
			sum += v
		case v := <-cs[2]:
			sum += v
		case v := <-cs[3]:
			sum += v
		}
	}
	el := time.Since(t0)
	_ = sum
	fmt.Printf("RESULT select ns_per_msg=%.2f\n", float64(el.Nanoseconds())/msgs)
}

func parkedChan() {
	const n = 1000000
	before := residentKiB()
	t0 := time.Now()
	var started sync.WaitGroup
	started.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			own := make(chan int)
			started.Done()
			<-own
		}()
	}
	started.Wait()
	time.Sleep(10 * time.Millisecond)
	secs := time.Since(t0).Seconds()
	bytes := float64(residentKiB()-before) * 1024 / n
	fmt.Printf("RESULT parked_chan bytes_per_fiber=%.1f spawn_s=%.3f\n", bytes, secs)
}

func main() {
	bench := flag.String("bench", "", "pingpong|mpmc|select|parked_chan")
	procs := flag.Int("procs", 1, "GOMAXPROCS")
	flag.Parse()
	runtime.GOMAXPROCS(*procs)
	switch *bench {
	case "pingpong":
		pingpong()
	case "mpmc":
		mpmc()
	case "select":
		selectBench()
	case "parked_chan":
		parkedChan()
	default:
		fmt.Fprintln(os.Stderr, "unknown -bench", *bench)
		os.Exit(2)
	}
}
