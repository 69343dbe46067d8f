// reactor_echo: the event-loop ceiling for the echo benchmark. A hand-written
// non-blocking epoll reactor in C: N threads, each with its own SO_REUSEPORT
// listener and epoll set, edge-triggered, echoing with no allocation per
// message. This is what "blocking style at event-loop speed" is measured
// against.
//   reactor_echo --listen 127.0.0.1:PORT [--threads N]
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_in sa;

static void* loop(void* arg) {
  (void)arg;
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (bind(lfd, (struct sockaddr*)&sa, sizeof sa) != 0 || listen(lfd, 4096) != 0) {
    perror("reactor_echo: listen");
    exit(1);
  }
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  struct epoll_event evs[512];
  char buf[65536];
  for (;;) {
    int n = epoll_wait(ep, evs, 512, -1);
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == lfd) {
        int c;
        while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct epoll_event cev = {.events = EPOLLIN | EPOLLET | EPOLLRDHUP, .data.fd = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
        }
        continue;
      }
      for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r > 0) {
          // Echo messages are small: a short write here would need an
          // output buffer and EPOLLOUT; count it as the reactor's cost.
          ssize_t off = 0;
          while (off < r) {
            ssize_t w = send(fd, buf + off, (size_t)(r - off), MSG_NOSIGNAL);
            if (w < 0) {
              if (errno == EAGAIN) continue;
              break;
            }
            off += w;
          }
          continue;
        }
        if (r < 0 && errno == EAGAIN) break;
        close(fd);
        break;
      }
    }
  }
  return NULL;
}

int main(int argc, char** argv) {
  const char* addr = "127.0.0.1:9100";
  int threads = 1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--listen") && i + 1 < argc) addr = argv[++i];
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: %s --listen 127.0.0.1:PORT [--threads N]\n", argv[0]);
      return 2;
    }
  }
  char host[64];
  const char* colon = strrchr(addr, ':');
  if (!colon || (size_t)(colon - addr) >= sizeof host) return 2;
  memcpy(host, addr, (size_t)(colon - addr));
  host[colon - addr] = 0;
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)atoi(colon + 1));
  inet_pton(AF_INET, host, &sa.sin_addr);
  pthread_t t[64];
  if (threads < 1 || threads > 64) return 2;
  for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, loop, NULL);
  printf("reactor_echo listening on %s with %d threads\n", addr, threads);
  fflush(stdout);
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  return 0;
}
