module weftbench/sync

go 1.19
