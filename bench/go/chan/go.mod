module weftbench/chan

go 1.19
