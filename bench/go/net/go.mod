module weftbench/net

go 1.19
