module weftbench/runtime

go 1.19
