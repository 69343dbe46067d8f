// Go twins of the network benchmarks: a goroutine-per-connection echo
// server, and a net/http "Hello, World!" server.
// Usage: go run . -mode echo|http -listen 127.0.0.1:PORT -procs N [-hogs N]
// -hogs N (echo) also starts N goroutines that spin in a CPU-bound loop
// forever with no function call in it: only Go's asynchronous preemption
// lets the echo goroutines run (bench/net_bench.py --only hogs).
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync/atomic"
)

var hogSink uint64

// hog spins forever: an LCG with no call in the loop (atomic.StoreUint64 is
// an intrinsic, and the branch is never taken in practice; it keeps x live).
func hog(seed uint64) {
	x := seed
	for {
		x = x*6364136223846793005 + 1442695040888963407
		if x == 0 {
			atomic.StoreUint64(&hogSink, x)
		}
	}
}

func main() {
	mode := flag.String("mode", "echo", "echo or http")
	listen := flag.String("listen", "127.0.0.1:9200", "address")
	procs := flag.Int("procs", 1, "GOMAXPROCS")
	hogs := flag.Int("hogs", 0, "echo: also start N goroutines spinning in a CPU-bound loop forever")
	flag.Parse()
	runtime.GOMAXPROCS(*procs)
	switch *mode {
	case "echo":
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("go echo listening on %s, %d CPU hog goroutine(s)\n", ln.Addr(), *hogs)
		for i := 0; i < *hogs; i++ {
			go hog(uint64(i) + 1)
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				continue
			}
			go func(c net.Conn) {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						if err != io.EOF {
							return
						}
						return
					}
				}
			}(c)
		}
	case "http":
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "Hello, World!")
		})
		fmt.Printf("go http listening on %s\n", *listen)
		if err := http.ListenAndServe(*listen, nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown -mode")
		os.Exit(2)
	}
}
