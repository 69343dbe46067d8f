#!/usr/bin/env python3
"""Compile-error checks: each case must FAIL to compile, with a message that
says what to do (a static_assert's text), matched by its `// expect: REGEX`
lines. usage: check.py SOURCE_ROOT COMPILER [ARGS...] -- CASE.cpp..."""
import re
import subprocess
import sys

root = sys.argv[1]
sep = sys.argv.index("--")
compiler = sys.argv[2:sep]
cases = sys.argv[sep + 1:]
incs = [f"-I{root}/{p}/include" for p in ("runtime", "channels", "netpoll")] + [f"-I{root}/include"]
bad = 0
for case in cases:
    text = open(case).read()
    wants = re.findall(r"^// expect: (.*)$", text, re.M)
    if not wants:
        print(f"FAIL {case}: no '// expect:' line")
        bad += 1
        continue
    r = subprocess.run(compiler + ["-std=c++20", "-fsyntax-only", *incs, case],
                       capture_output=True, text=True, timeout=300)
    if r.returncode == 0:
        print(f"FAIL {case}: compiled, but it must not")
        bad += 1
        continue
    missing = [w for w in wants if not re.search(w, r.stderr)]
    if missing:
        print(f"FAIL {case}: the error does not say {missing}\n{r.stderr[:4000]}")
        bad += 1
    else:
        print(f"ok   {case}")
sys.exit(1 if bad else 0)
