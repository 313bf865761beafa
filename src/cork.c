/*
** cork.c - a short reply and the FIN after it in one TCP segment.
**
** A server that answers and closes (HTTP/1.0, "Connection: close", health
** checks) sends its reply at write() and its FIN at close(): two segments,
** and for each one the kernel runs the whole send path here and the
** receive path of the peer.  When a task is likely to close what it
** writes, the first writes of a TCP connection go out with MSG_MORE, which
** queues the bytes in the kernel without sending them; close() then shuts
** the sending side first, which puts the FIN on the queued bytes and sends
** both in one segment.  A task that does not close by the time it yields
** or ends gets its bytes pushed out then (cork_flush, from the loop): a
** write is never held past the run of the task that made it.
**
** "Likely" is a guess the last connections make: a first write followed by
** close makes the guess go up, one followed by a read (keep-alive) makes it
** go down.  A wrong guess costs one setsockopt(TCP_NODELAY) at the end of
** the run -- the one csock makes before a connection's second send anyway.
**
** This file calls no other of csock's: the socket and the loop call it.
*/
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "csock.h"

#define CORK_SLOTS 16 /* sockets corked in one run; more go out uncorked */
#define GUESS_MAX 4   /* how far the guess leans either way */

static _Thread_local csock_socket *corked[CORK_SLOTS]; /* in the task's run under way */
static _Thread_local int ncorked;
static _Thread_local int guess; /* > 0: a first write is expected to be followed by close */

static void lean(int by) {
  int g = guess + by;
  guess = g > GUESS_MAX ? GUESS_MAX : g < -GUESS_MAX ? -GUESS_MAX : g;
}

int cork_expected(void) { return guess > 0 && ncorked < CORK_SLOTS; }

void cork_add(csock_socket *s) {
  s->corked = 1;
  corked[ncorked++] = s;
}

static void unlist(const csock_socket *s) {
  for (int i = 0; i < ncorked; i++) {
    if (corked[i] == s) {
      corked[i] = corked[--ncorked];
      return;
    }
  }
}

/* s leaves the corked: its bytes went out some other way (shutdown). */
void cork_forget(csock_socket *s) {
  unlist(s);
  s->corked = 0;
}

/* TCP_NODELAY on, which also sends what MSG_MORE queued; s is off the list already. */
static void push(csock_socket *s) {
  int one = 1;
  setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  s->nodelay_due = 0; /* socket.c's NODELAY_DONE */
  s->corked = 0;
}

/*
** Sets the TCP_NODELAY that csock's TCP sockets get before their second
** send (socket.c's sock_nodelay_now): the one place that sets it, since it
** also ends a cork.  A corked socket has had at most its first send.
*/
void cork_set_nodelay(csock_socket *s) {
  if (s->corked) unlist(s);
  push(s);
}

/*
** s is about to be closed.  Corked, and the descriptor its alone, its
** sending side is shut first so that the FIN leaves with the queued bytes:
** close(2) alone would, with unread bytes in the receive queue, drop the
** queued ones and reset the connection.  A descriptor another process may
** hold (shared) is pushed instead, which leaves that process's copy open.
*/
void cork_closing(csock_socket *s, int shared) {
  if (s->corked) {
    unlist(s);
    if (shared) {
      push(s);
    } else {
      shutdown(s->fd, SHUT_WR);
      s->corked = 0;
    }
  }
  if (s->wrote) lean(+1);
  s->wrote = 0;
}

/* A read on s after its write: the connection goes on. */
void cork_reading(csock_socket *s) {
  s->wrote = 0;
  lean(-1);
}

/* The task's run ended (it yielded or returned): what it left corked goes out now. */
void cork_flush(void) {
  for (int i = 0; i < ncorked; i++) {
    csock_socket *s = corked[i];
    push(s);
    s->wrote = 0;
    lean(-1);
  }
  ncorked = 0;
}
