#!/usr/bin/env python3
"""Compile-time checks of misuse: go/spawn/Scope::go arguments (weft/runtime.hpp),
select() and Selector (weft/select.hpp).

Each snippet below must fail to compile with the static_assert text given,
which tells the user what to do; the control snippet (the same calls, used
correctly) must compile, so a failure cannot come from a broken set-up.

usage: compile_fail.py SOURCE_ROOT COMPILER [COMPILER ARGS...]
"""
import os
import subprocess
import sys
import tempfile

PRELUDE = """
#include <weft/weft.hpp>
#include <string>
#include <vector>
using namespace std::chrono_literals;
void f(weft::Chan<int> ch, weft::Chan<std::string> sc, weft::Selector& sel) {
  (void)ch; (void)sc; (void)sel;
"""

CONTROL = """
  std::string s = "x";
  weft::select(weft::send(sc, std::string("x")), weft::recv(ch), weft::after(1.5s));
  weft::select(weft::send(sc, std::move(s)), weft::after(std::chrono::duration<long double>(0.5)), weft::otherwise());
  auto t = weft::after(100ms);   // after/otherwise may be stored
  auto o = weft::otherwise();
  weft::select(weft::recv(ch), t, o);
  sel.add(weft::send(sc, std::string("x")));
  sel.add(weft::recv(ch, [](std::optional<int>) {}));
  sel.add(t);
  sel.add(o);
  std::vector<int> v;
  weft::go([](std::vector<int>&) {}, std::ref(v)).join();
  weft::spawn([](const std::vector<int>&) {}, v);
"""

CASES = [
    ("go with a T& parameter",
     "std::vector<int> v; weft::go([](std::vector<int>&) {}, v).join();",
     "pass std::ref(x)"),
    ("spawn with a T& parameter",
     "std::vector<int> v; weft::spawn([](std::vector<int>& x) { x.push_back(1); }, v);",
     "pass std::ref(x)"),
    ("Scope::go with arguments f does not take",
     "weft::Scope s; s.go([](int) {}, \"not an int\");",
     "f cannot be called with these arguments"),
    ("stored send case",
     "auto c = weft::send(sc, std::string(\"x\")); weft::select(c);",
     "must be built inside the select(...) call"),
    ("stored recv case",
     "auto c = weft::recv(ch); weft::select(c, weft::otherwise());",
     "must be built inside the select(...) call"),
    ("stored case to Selector::add",
     "auto c = weft::send(sc, std::string(\"x\")); sel.add(c);",
     "build the recv/send case inside the add(...) call"),
    ("not a case to select",
     "weft::select(ch);",
     "every argument must be a case made by weft::recv, send, after or otherwise"),
    ("not a case to Selector::add",
     "sel.add(42);",
     "the argument must be a case made by weft::recv, send, after or otherwise"),
    ("two otherwise",
     "weft::select(weft::otherwise(), weft::otherwise());",
     "at most one otherwise()"),
    ("recv of a non-channel",
     "int x = 0; weft::select(weft::recv(x));",
     "ch must be a weft::Chan<T>"),
    ("send of the wrong type",
     "weft::select(weft::send(ch, std::string(\"x\")));",
     "v must be convertible to the channel's T"),
    ("recv handler with the wrong signature",
     "weft::select(weft::recv(ch, [](std::string) {}));",
     "f must be callable as f(std::optional<T>)"),
    ("after of a non-duration",
     "weft::select(weft::after(100));",
     "d must be a std::chrono::duration"),
    ("after handler taking an argument",
     "weft::select(weft::after(1ms, [](int) {}));",
     "f must be callable as f()"),
]


def compile_snippet(cmd, root, body):
    src = PRELUDE + body + "\n}\n"
    with tempfile.NamedTemporaryFile("w", suffix=".cpp", delete=False) as f:
        f.write(src)
        path = f.name
    try:
        incs = [f"-I{os.path.join(root, d)}" for d in ("include", "runtime/include", "channels/include", "netpoll/include")]
        p = subprocess.run(cmd + ["-std=c++20", "-fsyntax-only"] + incs + [path], capture_output=True, text=True)
        return p.returncode, p.stderr
    finally:
        os.unlink(path)


def main():
    root, cmd = sys.argv[1], sys.argv[2:]
    bad = 0
    rc, err = compile_snippet(cmd, root, CONTROL)
    if rc != 0:
        print("FAIL control snippet does not compile:\n" + err)
        return 1
    print("ok   control snippet compiles")
    for name, body, want in CASES:
        rc, err = compile_snippet(cmd, root, body)
        if rc == 0:
            print(f"FAIL {name}: compiled")
            bad += 1
        elif want not in err:
            print(f"FAIL {name}: failed without the message {want!r}:\n{err[:3000]}")
            bad += 1
        else:
            print(f"ok   {name}: {want!r}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
