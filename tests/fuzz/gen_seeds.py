#!/usr/bin/env python3
# gen_seeds.py: writes the hand-made seeds of corpus/ (hand-*), in the program
# format of chan_fuzz.cpp's header comment. Run from anywhere:
#   python3 tests/fuzz/gen_seeds.py
# CHAN_FUZZ_TRACE=1 build/tests/fuzz/chan_fuzz_replay tests/fuzz/corpus/hand-X
# prints a seed as steps. The other files of corpus/ were found by fuzzing.
#   python3 tests/fuzz/gen_seeds.py --upgrade FILE...
# rewrites inputs written when opcodes were byte % 11 (before cancel, 11)
# into the current format, in place, with the same meaning.
import os
import sys

NIL = 8  # a chan byte that names the nil channel


def actor(a, go=False):
    return a + (6 if go else 0)


def make(cap):
    return [0, cap]


def send(a, ch, go=False):
    return [1, actor(a, go), ch]


def recv(a, ch, go=False):
    return [2, actor(a, go), ch]


def spec(cases, after=0, dflt=False):
    # cases: [("r"|"s", chan byte)]; after: 0 none, 1 after(0), 2 after(1h), 3 after(1ms)
    n = (len(cases) - 1) + 4 * after + 16 * int(dflt)
    return [n] + [ch * 2 + (1 if k == "s" else 0) for k, ch in cases]


def select(a, cases, after=0, dflt=False, go=False):
    return [3, actor(a, go)] + spec(cases, after, dflt)


def range_(a, ch, go=False):
    return [4, actor(a, go), ch]


def sendn(a, ch, k, go=False):
    return [5, actor(a, go), ch, k - 1]


def try_send(ch):
    return [6, ch]


def try_recv(ch):
    return [7, ch]


def close(ch):
    return [8, ch]


def dselect(cases, after=0):  # the driver's: otherwise unless after(0)
    return [9] + spec(cases, after)


def sleep():
    return [10]


def cancel(a, late=False):  # late: after the next try_send / try_recv / close
    return [11, a + (6 if late else 0)]


def prog(move_only, *steps):
    out = [1 if move_only else 0]
    for s in steps:
        out += s
    return bytes(out)


SEEDS = {
    # Unbuffered rendezvous both ways, parked FIFO order.
    "rendezvous": prog(False, make(0), recv(0, 0), recv(1, 0), try_send(0), send(2, 0), send(3, 0),
                       try_recv(0), try_recv(0), send(2, 0), recv(4, 0, go=True)),
    # Buffered FIFO; a full buffer parks senders, each recv refills it.
    "buffered-fifo": prog(True, make(2), send(0, 0), send(1, 0), send(2, 0), send(3, 0),
                          try_recv(0), recv(4, 0), try_recv(0), try_send(0), try_send(0), try_recv(0)),
    # Close wakes parked receivers (nullopt) and senders (ChanClosed); drain after close.
    "close-wakes-all": prog(False, make(0), make(1), recv(0, 0), recv(1, 0), try_send(1), send(2, 1),
                            send(3, 1), close(0), close(1), try_recv(1), recv(4, 1), try_recv(1)),
    "close-twice-nil": prog(True, make(3), try_send(0), close(0), close(0), close(NIL), try_send(0),
                            try_send(NIL), try_recv(NIL), try_recv(0), try_recv(0)),
    # Nil channel operations park forever (until shutdown unwinds them).
    "nil-parks": prog(False, make(1), send(0, NIL), recv(1, NIL, go=True), range_(2, NIL),
                      sendn(3, NIL, 3), select(4, [("r", NIL), ("s", NIL)]), try_send(0)),
    # A select parked on three channels, woken through the second.
    "select-park-wake": prog(False, make(0), make(1), make(0), try_send(1),
                             select(0, [("r", 0), ("s", 1), ("r", 2)]), try_send(2), try_recv(1),
                             select(1, [("r", 0), ("s", 1), ("r", 2)], go=True), try_recv(1), try_send(0)),
    # The same channel in several cases, parked; woken by each direction.
    "select-same-chan": prog(True, make(0), select(0, [("r", 0), ("r", 0), ("s", 0), ("s", 0)]),
                             try_recv(0), select(1, [("s", 0), ("s", 0), ("r", 0)]), try_send(0),
                             select(2, [("s", 0), ("s", 0)]), recv(3, 0)),
    # A select waiting to send and to receive on one unbuffered channel, matched by another select.
    "select-vs-select": prog(False, make(0), select(0, [("s", 0), ("r", 0)]),
                             select(1, [("r", 0), ("s", 0)]), select(2, [("s", 0), ("r", 0)]),
                             dselect([("r", 0), ("s", 0)]), try_recv(0)),
    # Driver selects with several ready cases, otherwise, after(0), after(1h).
    "driver-select": prog(True, make(2), make(1), try_send(0), try_send(1),
                          dselect([("r", 0), ("r", 1), ("s", 0)]), dselect([("s", 1), ("r", 1), ("r", 0)]),
                          dselect([("s", 1), ("s", 0)], after=1), dselect([("r", NIL)], after=2),
                          dselect([("r", 0), ("r", 0)]), dselect([("s", NIL), ("r", NIL)], after=1)),
    # A send case on a closed channel throws when chosen; parked selects woken by close.
    "select-closed": prog(False, make(0), make(1), select(0, [("r", 0), ("s", 0), ("r", 1)]),
                          select(1, [("s", 0), ("s", 1), ("s", 1)]), close(0), close(1),
                          dselect([("s", 0), ("r", 1)]), select(2, [("s", 1), ("r", 0)])),
    # Selects with after(1h) park with a timer; woken by channels, or left for shutdown.
    "select-timer": prog(True, make(0), select(0, [("r", 0), ("r", NIL)], after=2),
                         select(1, [("s", NIL)], after=2), try_send(0),
                         select(2, [("s", 0)], after=2, dflt=True), select(3, [("r", 0)], after=1)),
    # Selects with after(1ms), parked: the timer fires during the sleeps, or a
    # peer's operation wins first.
    "select-timeout": prog(False, make(0), make(1), select(0, [("r", 0)], after=3),
                           select(1, [("s", 0), ("r", 1)], after=3), try_send(0), sleep(),
                           select(2, [("s", 1), ("s", 1)], after=3), try_send(1), try_recv(1),
                           select(3, [("r", 0), ("r", NIL)], after=3), try_send(0), try_recv(0),
                           dselect([("r", 0)], after=3)),
    # Range and sendn ping-pong on an unbuffered channel, then close ends the range.
    "range-sendn-unbuf": prog(False, make(0), range_(0, 0), sendn(1, 0, 4), try_send(0),
                              sendn(2, 0, 4), sendn(3, 0, 2), recv(4, 0), close(0)),
    "range-sendn-buf": prog(True, make(1), sendn(0, 0, 4), range_(1, 0, go=True), sendn(2, 0, 3),
                            try_recv(0), close(0), make(4), sendn(3, 1, 4), range_(4, 1), try_send(1)),
    # Parked sendn woken by close; the range drains the buffer first.
    "sendn-close": prog(False, make(2), sendn(0, 0, 4), close(0), range_(1, 0), sendn(2, 0, 2),
                        try_recv(0)),
    # Actors started with go, back to idle, joined at the end; values left in buffers.
    "go-idle-join": prog(True, make(4), send(0, 0, go=True), send(1, 0, go=True), recv(2, 0, go=True),
                         send(0, 0), send(1, 0), make(3), sendn(3, 1, 4, go=True)),
    # Many values through capacity 4, driver and actors interleaved.
    "cap4-traffic": prog(False, make(4), make(0), sendn(0, 0, 4), sendn(1, 0, 4), try_recv(0),
                         range_(2, 0), sendn(3, 1, 4), select(4, [("r", 1), ("s", 0)]),
                         try_recv(1), try_recv(1), try_recv(1), close(1), close(0)),
    # A recv select parked on two channels; a buffered send through the other case.
    "select-mixed-buf": prog(True, make(1), make(0), select(0, [("r", 0), ("r", 1), ("s", 1)]),
                             try_send(0), select(1, [("s", 0), ("r", 0)]), try_recv(0),
                             select(2, [("s", 0), ("s", 1)]), recv(3, 1), try_recv(0)),
    # Otherwise taken by actors when nothing is ready; after(0) beats otherwise.
    "actor-otherwise": prog(False, make(0), select(0, [("r", 0)], dflt=True),
                            select(1, [("s", 0), ("r", NIL)], after=1, dflt=True),
                            select(2, [("r", NIL)], after=1, dflt=True), recv(3, 0),
                            select(0, [("s", 0)], dflt=True)),
    # Close with parked selects holding both a recv and a send case on the channel.
    "close-select-both": prog(True, make(0), make(0), select(0, [("s", 0), ("r", 0)]),
                              select(1, [("r", 1), ("s", 0), ("s", 1)]), recv(2, 0), close(0),
                              close(1), try_recv(0)),
    # Parked senders and receivers left at shutdown, with buffered move-only values.
    "shutdown-parked": prog(True, make(2), make(0), sendn(0, 0, 4), recv(1, 1), send(2, 1, go=True),
                            select(3, [("r", 1), ("s", 0)], go=True), range_(4, 1)),
    # Cancel each kind of parked operation: it withdraws, the channel is as before.
    "cancel-parked": prog(False, make(0), make(2), recv(0, 0, go=True), cancel(0), try_send(0),
                          sendn(1, 1, 4, go=True), cancel(1), try_recv(1), try_recv(1), try_recv(1),
                          select(2, [("r", 0), ("s", 0), ("s", 1)], go=True), cancel(2), try_send(0),
                          try_recv(0), range_(3, 0, go=True), cancel(3), try_send(0),
                          send(4, NIL, go=True), cancel(4), select(5, [("r", NIL)], after=2, go=True),
                          cancel(5), close(0), try_recv(0)),
    # Cancelled while idle: every later cancellation point throws at entry,
    # even when it could proceed; a select with otherwise does not.
    "cancel-idle-sticky": prog(True, make(1), send(0, 0, go=True), cancel(0), send(0, 0), recv(0, 0),
                               range_(0, 0), select(0, [("r", 0)], after=1), sendn(0, 0, 3),
                               select(0, [("r", 0)], dflt=True), select(0, [("s", 0)], dflt=True),
                               close(0), send(0, 0), recv(0, NIL), select(0, [("r", NIL)], dflt=True),
                               select(0, [("s", 0)], dflt=True), cancel(0), recv(0, 0)),
    # Late cancels: the driver's operation completes the parked actor first
    # (it wins), and the actor throws at its next cancellation point.
    "cancel-late-completion": prog(False, make(0), make(0), make(1), recv(0, 0, go=True), cancel(0, late=True),
                                   try_send(0), recv(0, 0), sendn(1, 0, 3, go=True), cancel(1, late=True),
                                   try_recv(0), try_recv(0), range_(2, 1, go=True), cancel(2, late=True),
                                   try_send(1), try_send(1),
                                   select(3, [("r", 1), ("r", 0)], go=True), cancel(3, late=True), close(0),
                                   select(4, [("s", 1), ("r", 1)], go=True), cancel(4, late=True), try_send(2),
                                   try_recv(1), try_send(1), cancel(5, late=True), make(0)),
    # Late cancels of actors the operation does not touch: they withdraw.
    "cancel-late-other": prog(True, make(0), make(0), recv(0, 0, go=True), recv(1, 0, go=True),
                              sendn(2, 1, 2, go=True), cancel(1, late=True), try_send(0),
                              cancel(0, late=True), try_recv(1), try_send(0), try_recv(1), try_recv(1)),
    # Cancel a select with after(1 ms) (its timer may win) and after it fired.
    "cancel-select-timeout": prog(False, make(0), select(0, [("r", 0)], after=3, go=True),
                                  select(1, [("s", 0), ("r", 0)], after=3, go=True), cancel(1), sleep(),
                                  cancel(0), select(0, [("r", 0)], after=3), try_send(0)),
    # Cancel an actor not started (started with go, cancelled before it runs)
    # and a spawned one (no handle: skipped); cancel twice.
    "cancel-unstarted": prog(False, make(1), cancel(2), send(2, 0), recv(2, 0), recv(3, 0),
                             cancel(3), try_send(0), cancel(2, late=True), cancel(2), try_recv(0)),
    # Selects holding move-only values on several channels, cancelled while
    # parked: every value stays with its owner; buffers as before.
    "cancel-select-values": prog(True, make(0), make(1), try_send(1),
                                 select(0, [("s", 0), ("s", 1), ("r", NIL), ("s", 0)], go=True),
                                 select(1, [("s", 1), ("r", 0)], go=True), cancel(0), try_recv(0),
                                 cancel(1), try_recv(1), try_recv(1), recv(2, 0), try_send(0)),
}


def upgrade(data):
    """An input of the % 11 format, re-encoded for % 12 (each opcode byte
    becomes its value % 11; operand bytes are kept, as is anything after
    the last step)."""
    out = bytearray(data[:1])
    i, steps = 1, 0

    def copy(k):
        nonlocal i
        out.extend(data[i:i + k])
        i += k

    def spec():
        n = data[i] if i < len(data) else 0
        copy(1 + 1 + n % 4)

    while i < len(data) and steps < 200:
        op = data[i] % 11
        out.append(op)
        i += 1
        steps += 1
        if op in (0, 6, 7, 8):
            copy(1)
        elif op in (1, 2, 4):
            copy(2)
        elif op == 5:
            copy(3)
        elif op == 3:
            copy(1)
            spec()
        elif op == 9:
            spec()
    out.extend(data[i:])
    return bytes(out)


def main():
    if sys.argv[1:2] == ["--upgrade"]:
        for path in sys.argv[2:]:
            with open(path, "rb") as f:
                data = f.read()
            with open(path, "wb") as f:
                f.write(upgrade(data))
        print(f"upgraded {len(sys.argv) - 2} inputs")
        return
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(here, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(here, "hand-" + name), "wb") as f:
            f.write(data)
    print(f"wrote {len(SEEDS)} seeds to {here}")


if __name__ == "__main__":
    main()
