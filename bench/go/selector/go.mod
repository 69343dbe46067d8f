module weftbench/selector

go 1.19
