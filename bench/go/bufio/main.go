// Go twin of bench/bufio_bench.cpp: lines read over a loopback TCP
// connection with a bufio.Scanner (Go's usual line reader, no allocation per
// line), while another goroutine writes them in 64 KiB blocks.
// Usage: go run . -bench read_line -procs N
// Prints one line: RESULT read_line ns_per_line=<value> mb_per_s=<value>
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"time"
)

const lines = 2048 * 1024 // 2,097,152: whole 64 KiB blocks
const lineLen = 64        // with its "\n"

func readLine() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			panic(err)
		}
		line := strings.Repeat("x", lineLen-1) + "\n"
		block := []byte(strings.Repeat(line, 1024)) // 64 KiB
		for sent := 0; sent < lines; sent += 1024 {
			if _, err := c.Write(block); err != nil {
				panic(err)
			}
		}
		c.Close()
	}()
	c, err := ln.Accept()
	if err != nil {
		panic(err)
	}
	defer c.Close()
	t0 := time.Now()
	s := bufio.NewScanner(c)
	n, bytes := 0, 0
	for s.Scan() {
		n++
		bytes += len(s.Bytes())
	}
	el := time.Since(t0)
	if n != lines || bytes != lines*(lineLen-1) {
		fmt.Fprintf(os.Stderr, "read %d lines, %d bytes\n", n, bytes)
		os.Exit(1)
	}
	fmt.Printf("RESULT read_line ns_per_line=%.2f mb_per_s=%.1f\n", float64(el.Nanoseconds())/lines,
		float64(lines*lineLen)/el.Seconds()/1e6)
}

func main() {
	bench := flag.String("bench", "read_line", "read_line")
	procs := flag.Int("procs", 1, "GOMAXPROCS")
	flag.Parse()
	runtime.GOMAXPROCS(*procs)
	switch *bench {
	case "read_line":
		readLine()
	default:
		fmt.Fprintln(os.Stderr, "unknown bench", *bench)
		os.Exit(2)
	}
}
