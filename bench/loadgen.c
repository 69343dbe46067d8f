// loadgen: a closed-loop load generator for the echo and HTTP benchmarks.
// One thread, epoll, non-blocking sockets: each of N connections sends a
// request, waits for the whole response, records the round trip and sends
// the next, for a fixed time. With --churn each connection makes one
// exchange and is closed and replaced by a new one: rps then counts
// connections served (connect, one round trip, close) and the latency runs
// from the connect. Prints one line:
//   RESULT rps=<round trips/s> p50_us=.. p99_us=.. p999_us=.. errors=..
// Loopback only by design (it refuses other addresses).
//   loadgen --addr 127.0.0.1:9000 [--conns 100] [--seconds 5] [--size 64] [--mode echo|http] [--churn]
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MODE_ECHO, MODE_HTTP };

typedef struct {
  int fd;
  size_t sent, got, want;  // bytes of the current exchange
  uint64_t t0;
  int connected;
} conn_t;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u32(const void* a, const void* b) {
  uint32_t x = *(const uint32_t*)a, y = *(const uint32_t*)b;
  return x < y ? -1 : x > y;
}

static void usage(const char* p) {
  fprintf(stderr, "usage: %s --addr 127.0.0.1:PORT [--conns N] [--seconds S] [--size BYTES] [--mode echo|http] [--churn]\n",
          p);
  exit(2);
}

static char* req;
static size_t req_len;
static int mode;
static size_t size;

// Opens slot i's connection (non-blocking connect, edge-triggered epoll).
static int open_conn(int ep, conn_t* c, uint32_t i, const struct sockaddr_in* sa) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->t0 = now_ns();
  if (connect(fd, (const struct sockaddr*)sa, sizeof *sa) != 0 && errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  c->fd = fd;
  c->sent = c->got = 0;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.u32 = i};
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  return 0;
}

// For HTTP: the response length once the headers are in (0 if not yet).
static size_t http_len(const char* buf, size_t n) {
  const char* end = memmem(buf, n, "\r\n\r\n", 4);
  if (!end) return 0;
  size_t body = 0;
  const char* cl = memmem(buf, (size_t)(end - buf), "Content-Length:", 15);
  if (cl) body = strtoul(cl + 15, NULL, 10);
  return (size_t)(end - buf) + 4 + body;
}

int main(int argc, char** argv) {
  const char* addr = NULL;
  int conns = 100, churn = 0;
  double seconds = 5;
  size = 64;
  mode = MODE_ECHO;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--addr") && i + 1 < argc) addr = argv[++i];
    else if (!strcmp(argv[i], "--conns") && i + 1 < argc) conns = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
    else if (!strcmp(argv[i], "--size") && i + 1 < argc) size = (size_t)atol(argv[++i]);
    else if (!strcmp(argv[i], "--churn")) churn = 1;
    else if (!strcmp(argv[i], "--mode") && i + 1 < argc) {
      i++;
      if (!strcmp(argv[i], "http")) mode = MODE_HTTP;
      else if (strcmp(argv[i], "echo")) usage(argv[0]);
    } else usage(argv[0]);
  }
  if (!addr || conns <= 0 || seconds <= 0 || size == 0 || size > 65536) usage(argv[0]);
  char host[64];
  const char* colon = strrchr(addr, ':');
  if (!colon || (size_t)(colon - addr) >= sizeof host) usage(argv[0]);
  memcpy(host, addr, (size_t)(colon - addr));
  host[colon - addr] = 0;
  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)atoi(colon + 1));
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 || (ntohl(sa.sin_addr.s_addr) >> 24) != 127) {
    fprintf(stderr, "loadgen: only 127.x.x.x addresses are allowed\n");
    return 2;
  }
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);

  if (mode == MODE_HTTP) {
    req = strdup("GET / HTTP/1.1\r\nHost: bench\r\n\r\n");
    req_len = strlen(req);
  } else {
    req = malloc(size);
    for (size_t i = 0; i < size; i++) req[i] = (char)('a' + i % 26);
    req_len = size;
  }
  int ep = epoll_create1(0);
  conn_t* cs = calloc((size_t)conns, sizeof(conn_t));
  for (int i = 0; i < conns; i++) {
    if (open_conn(ep, &cs[i], (uint32_t)i, &sa) != 0) {
      perror("loadgen: connect");
      return 1;
    }
  }
  size_t lat_cap = 1 << 22, nlat = 0;
  uint32_t* lat = malloc(lat_cap * sizeof(uint32_t));
  uint64_t done = 0, errors = 0;
  char* buf = malloc(1 << 17);
  uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9);
  struct epoll_event evs[512];
  int live = conns;
  while (live > 0) {
    uint64_t t = now_ns();
    if (t >= end) break;
    int n = epoll_wait(ep, evs, 512, (int)((end - t) / 1000000) + 1);
    for (int k = 0; k < n; k++) {
      conn_t* c = &cs[evs[k].data.u32];
      if (c->fd < 0) continue;
      if (evs[k].events & (EPOLLERR | EPOLLHUP)) {
        errors++;
        close(c->fd);
        c->fd = -1;
        live--;
        continue;
      }
      for (;;) {
        // Send what is left of the request.
        if (c->sent < req_len) {
          if (c->sent == 0 && c->got == 0 && !churn) c->t0 = now_ns();
          ssize_t w = send(c->fd, req + c->sent, req_len - c->sent, MSG_NOSIGNAL);
          if (w < 0) {
            if (errno == EAGAIN) break;
            errors++;
            close(c->fd);
            c->fd = -1;
            live--;
            break;
          }
          c->sent += (size_t)w;
          if (c->sent < req_len) break;
        }
        ssize_t r = recv(c->fd, buf + c->got, (1 << 17) - c->got, 0);
        if (r < 0 && errno == EAGAIN) break;
        if (r <= 0) {
          errors++;
          close(c->fd);
          c->fd = -1;
          live--;
          break;
        }
        c->got += (size_t)r;
        size_t want = mode == MODE_ECHO ? req_len : http_len(buf, c->got);
        if (want == 0 || c->got < want) continue;
        uint64_t t1 = now_ns();
        if (nlat < lat_cap) lat[nlat++] = (uint32_t)((t1 - c->t0) / 1000);
        done++;
        c->got = 0;
        c->sent = 0;
        if (churn) {  // this connection is done: a new one takes its slot
          close(c->fd);
          c->fd = -1;
          if (open_conn(ep, c, evs[k].data.u32, &sa) != 0) {
            errors++;
            live--;
          }
          break;
        }
      }
    }
  }
  double el = (double)(now_ns() - start) / 1e9;
  qsort(lat, nlat, sizeof(uint32_t), cmp_u32);
#define PCT(p) (nlat ? lat[(size_t)((double)(nlat - 1) * (p))] : 0)
  printf("RESULT rps=%.0f p50_us=%u p99_us=%u p999_us=%u errors=%llu conns=%d\n", (double)done / el, PCT(0.50),
         PCT(0.99), PCT(0.999), (unsigned long long)errors, conns);
  return 0;
}
