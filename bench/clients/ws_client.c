/*
** ws_client.c - WebSocket echo load for bench/ws_echo.sh: CONNS connections to
** 127.0.0.1:PORT, each doing the upgrade, then sending one masked text frame
** of SIZE bytes (< 126) and sending the next when the echo is back, for
** SECONDS.  One epoll thread; prints "started" when every connection is
** up, then "messages N" (echoes received).  The answer's frames are only
** counted by length (2 + SIZE bytes each): the correctness of the servers
** is the specs' business, this is load.
**
**   cc -O2 -o ws_client ws_client.c && ./ws_client PORT [CONNS [SECONDS [SIZE]]]
*/
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

/* A blocking connect and upgrade; returns the descriptor, nonblocking. */
static int open_conn(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  static const char req[] =
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) die("write");
  char head[1024];
  size_t got = 0;
  while (got < 4 ||
         memcmp(head + got - 4, "\r\n\r\n", 4) != 0) { /* byte by byte: no frame is read */
    if (got == sizeof head || read(fd, head + got, 1) != 1) die("upgrade");
    got++;
  }
  if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
    fprintf(stderr, "ws_client: no 101: %.40s\n", head);
    exit(1);
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: ws_client PORT [CONNS [SECONDS [SIZE]]]\n");
    return 2;
  }
  int port = atoi(argv[1]);
  int conns = argc > 2 ? atoi(argv[2]) : 100;
  double secs = argc > 3 ? atof(argv[3]) : 3;
  int size = argc > 4 ? atoi(argv[4]) : 64;
  if (conns < 1 || size < 0 || size > 125) {
    fprintf(stderr, "ws_client: CONNS >= 1, SIZE 0-125\n");
    return 2;
  }
  unsigned char frame[2 + 4 + 125];
  const unsigned char key[4] = {0x11, 0x22, 0x33, 0x44};
  frame[0] = 0x81;
  frame[1] = (unsigned char)(0x80 | size);
  memcpy(frame + 2, key, 4);
  for (int i = 0; i < size; i++) frame[6 + i] = (unsigned char)('m' ^ key[i % 4]);
  size_t flen = 6 + (size_t)size, answer = 2 + (size_t)size;

  int ep = epoll_create1(0);
  if (ep < 0) die("epoll_create1");
  size_t *pending = calloc((size_t)conns, sizeof *pending); /* bytes of a partial answer */
  int *fds = calloc((size_t)conns, sizeof *fds);
  if (!pending || !fds) die("calloc");
  for (int i = 0; i < conns; i++) {
    fds[i] = open_conn(port);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (unsigned)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) < 0) die("epoll_ctl");
  }
  printf("started\n");
  fflush(stdout);
  for (int i = 0; i < conns; i++)
    if (write(fds[i], frame, flen) != (ssize_t)flen) die("write");
  long long count = 0;
  double end = now() + secs;
  struct epoll_event evs[256];
  char buf[65536];
  while (now() < end) {
    int n = epoll_wait(ep, evs, 256, 100);
    for (int k = 0; k < n; k++) {
      int i = (int)evs[k].data.u32;
      ssize_t r = read(fds[i], buf, sizeof buf);
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        fprintf(stderr, "ws_client: connection %d ended\n", i);
        return 1;
      }
      pending[i] += (size_t)r;
      while (pending[i] >= answer) { /* one echo in: the next message out */
        pending[i] -= answer;
        count++;
        if (write(fds[i], frame, flen) != (ssize_t)flen) die("write");
      }
    }
  }
  printf("messages %lld\n", count);
  return 0;
}
