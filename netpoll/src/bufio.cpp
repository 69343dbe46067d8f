// bufio.cpp: see weft/bufio.hpp. No shared state (one fiber at a time).
#include <weft/bufio.hpp>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace weft::net {

BufReader::BufReader(TcpStream& stream, std::size_t max_line, std::size_t buffer_size)
    : stream_(stream), max_line_(max_line), initial_(buffer_size) {
  if (max_line == 0) throw std::invalid_argument("weft: BufReader: max_line must be at least 1");
  if (buffer_size == 0) throw std::invalid_argument("weft: BufReader: buffer_size must be at least 1");
}

bool BufReader::fill(std::size_t want) {
  if (eof_) return false;
  if (begin_ == end_) {
    begin_ = end_ = 0;
  } else if (begin_ > 0 && end_ == cap_) {
    std::memmove(buf_.get(), buf_.get() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (end_ == cap_) {
    // Full of unread bytes (or not yet allocated): grow, as far as `want`.
    std::size_t cap = cap_ == 0 ? std::min(initial_, want) : std::min(cap_ * 2, want);
    cap = std::max(cap, end_ - begin_ + 1);
    auto bigger = std::make_unique_for_overwrite<char[]>(cap);
    if (end_ > begin_) std::memcpy(bigger.get(), buf_.get() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
    buf_ = std::move(bigger);
    cap_ = cap;
  }
  // A throw here (deadline, cancellation, closed socket) leaves the buffer
  // as it was: nothing is consumed.
  std::size_t n = stream_.read({buf_.get() + end_, cap_ - end_});
  if (n == 0) {
    eof_ = true;
    return false;
  }
  end_ += n;
  return true;
}

std::size_t BufReader::find(char delim, std::size_t limit) {
  std::size_t scanned = 0;  // buf_[begin_, begin_ + scanned) holds no delim
  for (;;) {
    if (end_ > begin_) {
      const char* base = buf_.get() + begin_;
      if (auto* p = static_cast<const char*>(std::memchr(base + scanned, delim, end_ - begin_ - scanned)))
        if (std::size_t n = static_cast<std::size_t>(p - base); n <= limit) return n + 1;
      scanned = end_ - begin_;
    }
    if (scanned > limit) {
      begin_ = end_ = 0;  // drop the buffered part of the line
      throw LineTooLong("weft: BufReader: line longer than " + std::to_string(max_line_) + " bytes");
    }
    // Room for the limit and the delimiter is enough to tell.
    if (!fill(limit + 1)) return end_ - begin_;
  }
}

bool BufReader::read_until(char delim, std::string& out) {
  std::size_t n = find(delim, max_line_);
  if (n == 0) {
    out.clear();  // buf_ may be null: no assign from it
    return false;
  }
  out.assign(buf_.get() + begin_, n);
  begin_ += n;
  return true;
}

bool BufReader::read_line(std::string& line) {
  // One byte more than max_line: room for the '\r' of a "\r\n" ending.
  std::size_t n = find('\n', max_line_ + 1);
  if (n == 0) {
    line.clear();
    return false;
  }
  const char* p = buf_.get() + begin_;
  std::size_t len = n;
  if (len > 0 && p[len - 1] == '\n') {
    len--;
    if (len > 0 && p[len - 1] == '\r') len--;
  }
  if (len > max_line_) {
    begin_ += n;
    throw LineTooLong("weft: BufReader: line longer than " + std::to_string(max_line_) + " bytes");
  }
  line.assign(p, len);
  begin_ += n;
  return true;
}

std::size_t BufReader::read(std::span<char> buf) {
  if (buf.empty()) return 0;
  if (begin_ == end_) {
    if (eof_) return 0;
    if (buf.size() >= std::max(cap_, initial_)) {
      std::size_t n = stream_.read(buf);
      if (n == 0) eof_ = true;
      return n;
    }
    if (!fill(initial_)) return 0;
  }
  std::size_t n = std::min(buf.size(), end_ - begin_);
  std::memcpy(buf.data(), buf_.get() + begin_, n);
  begin_ += n;
  return n;
}

}  // namespace weft::net
