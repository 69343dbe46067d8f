"""Every example answers --help (exit 0, a usage line) and refuses an unknown
flag (exit 2, a message on stderr). http_hello gets the --help check only
(its own driver tests the rest)."""
from example_util import check_help, done, run

EXAMPLES = {
    "demo": ["--fibers", "--workers"],
    "prime_sieve": ["--count", "--workers"],
    "pipeline": ["--numbers", "--squarers", "--take", "--workers"],
    "worker_pool": ["--jobs", "--pool", "--workers"],
    "dial_race": ["--servers", "--workers", "HOST:PORT"],
    "echo_server": ["--listen", "--workers", "--hogs"],
    "chat_server": ["--listen", "--workers"],
    "kv_server": ["--listen", "--workers", "--max-line", "SET key value"],
    "fetch": ["--timeout", "http://HOST:PORT/PATH"],
}

for name, words in EXAMPLES.items():
    check_help(name, *words)
    _, err = run(name, "--no-such-flag", expect_rc=2)
    assert "unknown argument --no-such-flag" in err, f"{name}: {err}"
check_help("http_hello", "--listen")
# A flag's value is checked.
_, err = run("prime_sieve", "--count", "x", expect_rc=2)
assert "--count needs a number" in err, err
_, err = run("prime_sieve", "--count", expect_rc=2)
assert "--count needs a value" in err, err
done("help")
