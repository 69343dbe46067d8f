// weft/bufio.hpp: a buffered reader over a TcpStream (Go's bufio.Reader).
//
//   weft::net::BufReader in(conn);
//   std::string line;
//   while (in.read_line(line)) handle(line);   // false at a clean end of stream
//
// It only calls TcpStream::read, so the stream's deadlines (weft::Timeout),
// cancellation (weft::Cancelled) and SocketClosed pass through unchanged. A
// call that throws consumes nothing: the bytes of an unfinished line stay
// buffered, and a later call (after a new deadline, say) sees them again.
//
// No shared state: a BufReader belongs to one fiber at a time, like Go's
// bufio.Reader (a writer fiber may use the stream itself meanwhile). It holds
// no buffer until its first read (then buffer_size bytes), and the buffer
// grows (doubling) only while one line needs more room, to max_line + 2
// bytes at most.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>

#include <weft/net.hpp>

namespace weft::net {

// A line (or read_until piece) longer than the reader's max_line.
struct LineTooLong : std::length_error {
  using std::length_error::length_error;
};

class BufReader {
 public:
  static constexpr std::size_t default_max_line = 64 * 1024;
  static constexpr std::size_t default_buffer_size = 4096;

  // The stream must outlive the reader. max_line bounds a line's length
  // (without its "\n" or "\r\n"); both sizes must be at least 1
  // (std::invalid_argument otherwise).
  explicit BufReader(TcpStream& stream, std::size_t max_line = default_max_line,
                     std::size_t buffer_size = default_buffer_size);
  BufReader(const BufReader&) = delete;
  BufReader& operator=(const BufReader&) = delete;

  // The next line into `line`, without its "\n" or "\r\n". A last line
  // without a newline is returned as it is. False at the end of the stream
  // with nothing left (line is then empty). A line longer than max_line
  // throws LineTooLong; its buffered part is dropped, so what the reader
  // returns next is unspecified: close the connection.
  bool read_line(std::string& line);

  // The bytes up to and including the next `delim` into `out` (Go's
  // ReadString): out lacks the delimiter only for a last piece at the end of
  // the stream. False at the end of the stream with nothing left. More than
  // max_line bytes before the delimiter throw LineTooLong, as read_line.
  bool read_until(char delim, std::string& out);

  // Up to buf.size() bytes: the buffered ones first, else at most one
  // TcpStream::read (straight into buf when it is at least as large as the
  // buffer). Parks until >= 1 byte; 0 at the end of the stream or for an
  // empty buf.
  std::size_t read(std::span<char> buf);

  std::size_t buffered() const noexcept { return end_ - begin_; }  // bytes read ahead, not yet returned
  std::size_t max_line() const noexcept { return max_line_; }
  TcpStream& stream() noexcept { return stream_; }

 private:
  // The length of the next piece ending in delim (delimiter included), or
  // of what is left before the end of the stream; 0 at the end with nothing
  // left. Throws LineTooLong past `limit` bytes without a delimiter.
  std::size_t find(char delim, std::size_t limit);
  // Reads once more into the buffer (compacting or growing it to make room
  // for at least `want` bytes in all); false at the end of the stream.
  bool fill(std::size_t want);

  TcpStream& stream_;
  std::size_t max_line_;
  std::size_t initial_;              // the first buffer's size
  std::unique_ptr<char[]> buf_;      // buf_[begin_, end_) is buffered, unread
  std::size_t cap_ = 0;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
  bool eof_ = false;                 // the stream returned 0: it is at its end
};

}  // namespace weft::net
