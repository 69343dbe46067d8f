// bufio_test.cpp: weft::net::BufReader (weft/bufio.hpp) over loopback TCP:
// lines split across reads at every byte boundary, "\r\n", the long-line
// error, a last line without newline, deadlines and cancellation passing
// through without losing buffered bytes, read() mixed with lines, and many
// connections at once. Every socket has a 10 s deadline as a failure bound;
// no verdict depends on timing.
#include <gtest/gtest.h>

#include "net_util.hpp"
#include <weft/bufio.hpp>
#include <weft/weft.hpp>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

namespace net_test {
namespace {

using namespace std::chrono_literals;
using weft::Clock;
using weft::net::BufReader;
using weft::net::LineTooLong;
using weft::net::TcpListener;
using weft::net::TcpStream;

constexpr auto kBound = 10s;

using net_test::connect_pair;
using net_test::Pair;

std::vector<std::string> read_all_lines(BufReader& in) {
  std::vector<std::string> out;
  std::string line;
  while (in.read_line(line)) out.push_back(line);
  EXPECT_TRUE(line.empty());
  return out;
}

class BufIo : public WorkersParam {};

TEST(BufIoArgs, BadSizesThrowInvalidArgument) {
  weft::run([] {
    auto ln = TcpListener::listen("127.0.0.1:0");
    auto p = connect_pair(ln);
    EXPECT_THROW(BufReader(p.s, 0), std::invalid_argument);
    EXPECT_THROW(BufReader(p.s, 16, 0), std::invalid_argument);
    BufReader in(p.s, 16, 1);
    EXPECT_EQ(&in.stream(), &p.s);
    EXPECT_EQ(in.max_line(), 16u);
    EXPECT_EQ(in.buffered(), 0u);
  });
}

// The text arrives in two writes split at every byte offset; the reader
// takes the lines complete in the first part before the second is written,
// so a line (or a "\r\n") is cut at that offset. Done with buffers of 1, 3
// and 4096 bytes, so reads also end at every buffer boundary.
TEST_P(BufIo, LinesSplitAtEveryByteBoundary) {
  const std::string text = "alpha\nbe\r\n\n\r\ngamma delta\r\nx\nlast";
  const std::vector<std::string> want = {"alpha", "be", "", "", "gamma delta", "x", "last"};
  weft::run(
      [&] {
        auto ln = TcpListener::listen("127.0.0.1:0");
        for (std::size_t bufsize : {1u, 3u, 4096u}) {
          for (std::size_t cut = 0; cut <= text.size(); cut++) {
            // (No SCOPED_TRACE: gtest keeps it per thread, and a fiber may move.)
            const std::string where = "buffer " + std::to_string(bufsize) + ", cut at " + std::to_string(cut);
            auto p = connect_pair(ln);
            BufReader in(p.s, 64, bufsize);
            std::vector<std::string> got;
            std::string line;
            p.c.write_all(std::string_view(text).substr(0, cut));
            auto complete = static_cast<std::size_t>(std::count(text.begin(), text.begin() + cut, '\n'));
            for (std::size_t i = 0; i < complete; i++) {
              ASSERT_TRUE(in.read_line(line)) << where;
              got.push_back(line);
            }
            p.c.write_all(std::string_view(text).substr(cut));
            p.c.shutdown_write();
            for (auto& l : read_all_lines(in)) got.push_back(l);
            EXPECT_EQ(got, want) << where;
            EXPECT_FALSE(in.read_line(line)) << where;  // the end stays the end
          }
        }
      },
      opts());
}

TEST_P(BufIo, CrLfAndStrayCarriageReturns) {
  weft::run(
      [] {
        auto ln = TcpListener::listen("127.0.0.1:0");
        auto p = connect_pair(ln);
        p.c.write_all("a\r\n\r\nb\r\r\n\rc\nd\re\n\r");
        p.c.shutdown_write();
        BufReader in(p.s);
        // Only one "\r" before the "\n" goes; a last lone "\r" stays.
        EXPECT_EQ(read_all_lines(in), (std::vector<std::string>{"a", "", "b\r", "\rc", "d\re", "\r"}));
      },
      opts());
}

TEST_P(BufIo, ReadUntilKeepsTheDelimiter) {
  weft::run(
      [] {
        auto ln = TcpListener::listen("127.0.0.1:0");
        auto p = connect_pair(ln);
        p.c.write_all("k1=v1;k2=;;tail");
        p.c.shutdown_write();
        BufReader in(p.s, 64, 2);
        std::string piece;
        std::vector<std::string> got;
        while (in.read_until(';', piece)) got.push_back(piece);
        EXPECT_EQ(got, (std::vector<std::string>{"k1=v1;", "k2=;", ";", "tail"}));
        EXPECT_TRUE(piece.empty());
      },
      opts());
}

TEST_P(BufIo, LastLineWithoutNewlineAndEmptyStream) {
  weft::run(
      [] {
        auto ln = TcpListener::listen("127.0.0.1:0");
        {
          auto p = connect_pair(ln);
          p.c.write_all("abc\ndef");
          p.c.shutdown_write();
          BufReader in(p.s);
          EXPECT_EQ(read_all_lines(in), (std::vector<std::string>{"abc", "def"}));
        }
        {
          auto p = connect_pair(ln);
          p.c.shutdown_write();
          BufReader in(p.s);
          std::string line = "stale";
          EXPECT_FALSE(in.read_line(line));
          EXPECT_TRUE(line.empty());
          char buf[8];
          EXPECT_EQ(in.read(buf), 0u);
        }
      },
      opts());
}

// max_line counts the line without its "\n" or "\r\n".
TEST_P(BufIo, LongLineThrowsLineTooLong) {
  weft::run(
      [] {
        auto ln = TcpListener::listen("127.0.0.1:0");
        {
          auto p = connect_pair(ln);
          p.c.write_all("12345678\n12345678\r\n123456789\nok\n");
          p.c.shutdown_write();
          BufReader in(p.s, 8, 3);
          std::string line;
          ASSERT_TRUE(in.read_line(line));
          EXPECT_EQ(line, "12345678");
          ASSERT_TRUE(in.read_line(line));
          EXPECT_EQ(line, "12345678");
          EXPECT_THROW(in.read_line(line), LineTooLong);
        }
        {
          // A line that never ends: the reader stops at the limit instead
          // of buffering the whole stream, with a message that says so.
          auto p = connect_pair(ln);
          BufReader in(p.s);
          auto w = weft::go([&p] {
            std::string chunk(16 * 1024, 'x');
            try {
              for (int i = 0; i < 64; i++) p.c.write_all(chunk);  // 1 MiB, no newline
            } catch (const std::system_error&) {
              // the server side closed: expected
            }
          });
          std::string line;
          try {
            in.read_line(line);
            ADD_FAILURE() << "no LineTooLong";
          } catch (const LineTooLong& e) {
            EXPECT_NE(std::string(e.what()).find("longer than 65536 bytes"), std::string::npos) << e.what();
          }
          EXPECT_LE(in.buffered(), BufReader::default_max_line + 2);
          p.s.close();
          w.join();
        }
        {
          auto p = connect_pair(ln);
          p.c.write_all("abcdefghij;");
          p.c.shutdown_write();
          BufReader in(p.s, 4);
          std::string piece;
          EXPECT_THROW(in.read_until(';', piece), LineTooLong);
        }
      },
      opts());
}

// A deadline passes while a line is half read: Timeout, and nothing is lost:
// with the deadline cleared the same call returns the whole line.
TEST_P(BufIo, DeadlineTimeoutKeepsThePartialLine) {
  weft::run(
      [] {
        auto ln = TcpListener::listen("127.0.0.1:0");
        auto p = connect_pair(ln);
        BufReader in(p.s, 64, 4);
        p.c.write_all("first\npart");
        std::string line;
        ASSERT_TRUE(in.read_line(line));
        EXPECT_EQ(line, "first");
        p.s.set_read_deadline(Clock::now() + 20ms);
        EXPECT_THROW(in.read_line(line), weft::Timeout);
        p.s.set_read_deadline(Clock::now() - 1s);  // already passed: fails even with data
        p.c.write_all("ial line\n");
        EXPECT_THROW(in.read_line(line), weft::Timeout);
        p.s.set_read_deadline(Clock::now() + kBound);
        ASSERT_TRUE(in.read_line(line));
        EXPECT_EQ(line, "partial line");
      },
      opts());
}

// A fiber parked in read_line is cancelled: Cancelled, and the bytes it had
// buffered stay for the next reader of the same BufReader.
TEST_P(BufIo, CancelledReadLineKeepsTheBufferedBytes) {
  weft::run(
      [] {
        auto ln = TcpListener::listen("127.0.0.1:0");
        auto p = connect_pair(ln);
        BufReader in(p.s);
        p.c.write_all("abc");
        auto r = weft::go([&in] {
          std::string line;
          in.read_line(line);
          return line;
        });
        // Let it read "abc" and park (likely, not needed for the verdict; no
        // polling of `in`, which belongs to the reader until it is joined).
        weft::this_fiber::sleep_for(20ms);
        r.cancel();
        EXPECT_THROW(r.join(), weft::Cancelled);
        p.c.write_all("def\n");
        std::string line;
        ASSERT_TRUE(in.read_line(line));
        EXPECT_EQ(line, "abcdef");
      },
      opts());
}

TEST_P(BufIo, ReadMixesWithLines) {
  weft::run(
      [] {
        auto ln = TcpListener::listen("127.0.0.1:0");
        auto p = connect_pair(ln);
        const std::string big(10000, 'b');
        p.c.write_all("hello\nworld" + big);
        p.c.shutdown_write();
        BufReader in(p.s, 64, 8);
        std::string line;
        ASSERT_TRUE(in.read_line(line));
        EXPECT_EQ(line, "hello");
        char small[3];
        ASSERT_EQ(in.read(small), 2u);  // what is buffered first: "wo" of the 8 bytes read
        EXPECT_EQ(std::string(small, 2), "wo");
        std::string rest;
        std::vector<char> buf(4096);  // larger than the buffer: read straight into it
        while (std::size_t n = in.read(buf)) rest.append(buf.data(), n);
        EXPECT_EQ(rest, "rld" + big);
        EXPECT_EQ(in.read(std::span<char>()), 0u);
      },
      opts());
}

// Many connections at once, each a fiber reading lines with its own
// BufReader and answering each with its length; the clients check every
// answer through their own BufReader.
TEST_P(BufIo, ManyConcurrentConnections) {
  const int conns = scaled(200, 10);
  constexpr int lines = 50;
  weft::run(
      [&] {
        auto ln = TcpListener::listen("127.0.0.1:0");
        auto addr = ln.local_addr();
        weft::WaitGroup served;
        served.add(conns);
        auto acceptor = weft::go([&] {
          for (int i = 0; i < conns; i++) {
            weft::spawn(
                [&served](TcpStream s) {
                  s.set_deadline(Clock::now() + kBound);
                  BufReader in(s, 1024, 16);
                  std::string line;
                  while (in.read_line(line)) s.write_all(std::to_string(line.size()) + ":" + line + "\r\n");
                  served.done();
                },
                ln.accept());
          }
        });
        std::vector<weft::JoinHandle<int>> clients;
        for (int i = 0; i < conns; i++) {
          clients.push_back(weft::go([&addr, i] {
            auto c = TcpStream::connect(addr);
            c.set_deadline(Clock::now() + kBound);
            BufReader in(c);
            int ok = 0;
            std::string reply;
            for (int k = 0; k < lines; k++) {
              std::string msg = "client " + std::to_string(i) + " line " + std::string(static_cast<std::size_t>(k), '.');
              c.write_all(msg + (k % 2 ? "\r\n" : "\n"));
              if (in.read_line(reply) && reply == std::to_string(msg.size()) + ":" + msg) ok++;
            }
            c.shutdown_write();
            if (in.read_line(reply)) ok = -1;  // nothing after the last answer
            return ok;
          }));
        }
        for (auto& h : clients) EXPECT_EQ(h.join(), lines);
        acceptor.join();
        served.wait();
      },
      opts());
}

INSTANTIATE_TEST_SUITE_P(BufIo, BufIo, ::testing::Values(1u, 2u), [](const auto& info) {
  return std::string("w") + std::to_string(info.param);
});

}  // namespace
}  // namespace net_test
