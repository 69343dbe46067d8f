// chat_server: every line a client sends is broadcast to all clients.
//   chat_server [--listen ADDR] [--workers N]     (default 127.0.0.1:9001)
// A hub fiber owns the set of clients and talks to the connection fibers
// over channels only (no locks): joins, leaves and messages arrive on three
// channels it selects over; each client has an outbox channel drained by its
// own writer fiber, so one slow client never blocks the hub (its outbox
// fills and it misses lines instead).
#include <weft/weft.hpp>

#include "args.hpp"

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>

namespace {

struct Client {
  std::uint64_t id;
  weft::Chan<std::string> outbox;
};

struct Hub {
  weft::Chan<Client> join = weft::make_chan<Client>();
  weft::Chan<std::uint64_t> leave = weft::make_chan<std::uint64_t>();
  weft::Chan<std::string> messages = weft::make_chan<std::string>(256);

  void run() {
    std::map<std::uint64_t, weft::Chan<std::string>> clients;
    for (;;) {
      weft::select(
          weft::recv(join,
                     [&](std::optional<Client> c) {
                       if (c) clients.emplace(c->id, c->outbox);
                     }),
          weft::recv(leave,
                     [&](std::optional<std::uint64_t> id) {
                       if (!id) return;
                       auto it = clients.find(*id);
                       if (it == clients.end()) return;
                       it->second.close();  // ends that client's writer
                       clients.erase(it);
                     }),
          weft::recv(messages, [&](std::optional<std::string> line) {
            if (!line) return;
            for (auto& [id, out] : clients) {
              std::string copy = *line;
              out.try_send(copy);  // a full outbox drops the line for that client only
            }
          }));
    }
  }
};

void serve(Hub& hub, weft::net::TcpStream conn) {
  auto c = std::make_shared<weft::net::TcpStream>(std::move(conn));
  std::uint64_t id = weft::this_fiber::id();
  auto outbox = weft::make_chan<std::string>(64);
  std::string who = c->peer_addr();
  hub.join.send(Client{id, outbox});
  hub.messages.send("* " + who + " joined\n");
  auto writer = weft::go([c, outbox] {
    try {
      for (std::string line : outbox) c->write_all(line);
    } catch (const std::system_error&) {
    }
  });
  weft::net::BufReader in(*c, 4096);
  std::string line;
  try {
    while (in.read_line(line)) hub.messages.send(who + ": " + line + "\n");
  } catch (const weft::net::LineTooLong&) {
    // a line over 4 KiB: not a chat client; drop it
  } catch (const std::system_error&) {
  }
  hub.leave.send(id);
  writer.join();
  hub.messages.send("* " + who + " left\n");
}

}  // namespace

int main(int argc, char** argv) {
  ServerArgs args = parse_server_args(argc, argv, "127.0.0.1:9001", "  then connect with a line-based client (nc HOST PORT) and type lines\n");
  try {
    return weft::run(
        [&] {
          auto ln = weft::net::TcpListener::listen(args.listen);
          std::printf("chat server listening on %s\n", ln.local_addr().c_str());
          std::fflush(stdout);
          Hub hub;
          weft::spawn([&hub] { hub.run(); });
          for (;;) weft::spawn([&hub](weft::net::TcpStream c) { serve(hub, std::move(c)); }, ln.accept());
          return 0;
        },
        weft::Options{.workers = args.workers});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chat_server: %s\n", e.what());
    return 1;
  }
}
