module weftbench/timer

go 1.19
