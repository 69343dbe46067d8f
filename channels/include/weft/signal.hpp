// weft/signal.hpp: OS signals delivered on channels (Go's os/signal.Notify
// and Stop; API.md "Timers and signals").
//
//   weft::Chan<int> sigs(1);
//   weft::notify_signals(sigs, {SIGINT, SIGTERM});
//   int s = *sigs.recv();           // parks this fiber (or plain thread) until one arrives
//   weft::stop_signals(sigs);       // SIGINT/SIGTERM get their previous disposition back
//
// The model (Go's runtime/sigqueue.go): a process-wide handler, installed for
// each relayed signal, only counts the delivery in a lock-free per-signal
// counter and writes a byte to a self-pipe; a relay thread (started by the
// first notify_signals, stopped by the stop_signals that leaves no channel)
// reads the pipe and offers each counted delivery to every channel watching
// that signal with try_send: a full channel drops it, and the relay never
// blocks on a channel. So it works whichever thread the kernel picks (a
// worker, a blocking-pool thread, a plain thread of the program), and while a
// signal is relayed its default action (e.g. termination) does not happen.
//
// Refused with std::invalid_argument (nothing is changed then): a nil
// channel, an empty list, a number outside 1..NSIG-1, SIGKILL and SIGSTOP
// (they cannot be caught), the synchronous fault signals SIGSEGV, SIGBUS,
// SIGFPE and SIGILL (weft's stack-overflow report owns SIGSEGV; a handler
// that returns from a fault re-runs the faulting instruction), SIGQUIT
// (weft's Options::dump_on_sigquit owns it), and the real-time signals the C
// library reserves for itself (32 .. SIGRTMIN-1 with glibc).
//
// Details:
// - Channels are compared by identity: two Chan handles that copy one
//   another are one channel. notify_signals again with the same channel adds
//   signals; stop_signals(ch) stops relaying every signal to ch (a channel
//   never registered: nothing happens). When stop_signals returns, ch gets no
//   more values from the relay (it may then be closed safely).
// - "Previous disposition": the one in force just before the notify_signals
//   that made the signal relayed (no channel watched it before); a signal
//   relayed to no channel any more gets exactly that back (SIG_DFL, SIG_IGN
//   or the program's own handler, with its flags and mask).
// - A channel closed while still registered gets nothing more (the relay
//   catches ChanClosed); call stop_signals before close.
// - Both calls are thread-safe and may be called from fibers or plain threads,
//   with or without a runtime running. They take a mutex and may wait for the
//   relay thread to exit (microseconds): in a fiber that briefly blocks its
//   worker. Never call them from a signal handler.
// - Deadlock detection: the relay is a thread weft does not count as its own
//   while it runs, so a runtime whose fibers all wait (e.g. main parked in
//   sigs.recv()) is not reported deadlocked while any signal is relayed, as a
//   Go program waiting on signal.Notify's channel is not. Once the last
//   channel is stopped, the relay exits and detection works again.
#pragma once

#include <csignal>  // SIGINT, SIGTERM...
#include <initializer_list>

#include <weft/chan.hpp>

namespace weft {

// Relays each delivery of the given signals to ch (try_send: dropped if ch is
// full). Throws std::invalid_argument for the refused inputs listed above,
// std::system_error if the OS refuses (sigaction, pipe, thread creation).
void notify_signals(Chan<int> ch, std::initializer_list<int> signals);

// Stops relaying to ch; signals no channel watches any more get their previous
// disposition back. Throws std::invalid_argument for a nil channel.
void stop_signals(Chan<int> ch);

}  // namespace weft
