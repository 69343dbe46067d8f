module weftbench/bufio

go 1.19
