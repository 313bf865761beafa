/*
** stream.c - a socket's bytes between the kernel (or the socket's transport,
** tls.c) and csock: filling the read buffer, and the waits and error
** results that every method that may wait shares (io.c, read.c, http.c).
*/
#include <errno.h>
#include <limits.h>
#include <sys/socket.h>

#include "csock.h"

#define READ_CHUNK 4096
#define FILL_MAX (64 * 1024) /* the most one fill makes room for: what one recv takes */

/* At the start of a continuation: the reason the task was woken, 0 if ready. */
int stream_resumed(lua_State *L, int status, csock_socket *s) {
  if (status == LUA_YIELD) {
    int e = loop_woken(L);
    if (e) return e;
  }
  return s->fd < 0 ? -EBADF : 0;
}

/* nil, message, err: the transport's own message when it has one (TLS: OpenSSL's reason). */
int stream_error(lua_State *L, const csock_socket *s, int err) {
  if (err < 0) err = -err;
  if (err == EBADF) return csock_failmsg(L, "socket closed", EBADF);
  const char *msg = s->xport != NULL ? s->xport->ops->message(s, err) : NULL;
  if (msg != NULL) return csock_failmsg(L, msg, err);
  return csock_failure(L, err);
}

/*
** A read() holds a cursor into s's buffer (loop_read_begin): a second
** reader -- another task, or a finalizer that the read's own allocations
** ran -- would move the bytes under it.  A method that takes bytes from
** the buffer checks when it starts and again each time it resumes: a task
** woken to read may find that another task began a read() between its
** wake-up and its turn.
*/
void stream_check_not_busy(lua_State *L, const csock_socket *s) {
  if (s->rbusy) luaL_error(L, "socket is busy: another task is reading from it");
}

/*
** After a call failed with errno e: 0 to try the call again (EINTR, or a
** wait for dir that ended ready), else the error to report.  EAGAIN marks
** the direction drained and waits; in a task the wait yields and k runs
** when the task is resumed.
*/
int stream_again_or_fail(lua_State *L, csock_socket *s, int dir, int e, double deadline,
                         lua_KContext ctx, lua_KFunction k) {
  if (e == EINTR) return 0;
  if (e != EAGAIN) return e;
  loop_blocked(&s->watch, dir);
  /* recv and recvfrom (the reads here) take whole results, so tasks may
     wait in them side by side; a write's bytes must not interleave */
  if (dir == CSOCK_READ) return loop_wait_shared(L, &s->watch, dir, deadline, ctx, k);
  return loop_wait(L, &s->watch, dir, deadline, ctx, k);
}

/*
** After a transport call (s->xport) failed with r: 0 when the wait it
** asked for ended ready, else the error.  A TLS read may wait to write.
*/
int stream_xport_wait(lua_State *L, csock_socket *s, long r, double deadline, lua_KContext ctx,
                      lua_KFunction k) {
  if (r == -XPORT_WANT_READ) return loop_wait(L, &s->watch, CSOCK_READ, deadline, ctx, k);
  if (r == -XPORT_WANT_WRITE) return loop_wait(L, &s->watch, CSOCK_WRITE, deadline, ctx, k);
  return (int)-r;
}

/* fill through a transport: -EAGAIN to wait to read, -XPORT_WANT_WRITE to write. */
static int fill_xport(csock_socket *s, char *p, size_t avail) {
  long r = s->xport->ops->recv(s, p, avail);
  if (r > 0) {
    buf_commit(s->rbuf, (size_t)r);
    return (int)r;
  }
  if (buf_len(s->rbuf) == 0) buf_consume(&s->rbuf, 0); /* give the block back */
  if (r == 0) s->eof = 1;
  return r == -XPORT_WANT_READ ? -EAGAIN : (int)r;
}

/*
** Reads more bytes into the buffer: > 0 read, 0 end of stream, -errno.
** want: the room to make first (fill_hint), from READ_CHUNK up to FILL_MAX,
** so that read(65536) takes one recv(2) where the buffer's own growth took
** three or four.
*/
int stream_fill(csock_socket *s, size_t want) {
  if (!loop_ready(&s->watch, CSOCK_READ)) return -EAGAIN;
  if (want < READ_CHUNK) want = READ_CHUNK;
  if (want > FILL_MAX) want = FILL_MAX;
  size_t avail;
  char *p = buf_reserve(&s->rbuf, want, &avail);
  if (p == NULL) return -ENOMEM;
  if (s->xport != NULL) return fill_xport(s, p, avail);
  for (;;) {
    ssize_t r = recv(s->fd, p, avail, 0);
    if (r > 0) {
      if ((size_t)r < avail && s->type == SOCK_STREAM) loop_drained(&s->watch);
      buf_commit(s->rbuf, (size_t)r);
      return (int)(r > INT_MAX ? INT_MAX : r);
    }
    if (r == 0) {
      s->eof = 1;
      if (buf_len(s->rbuf) == 0) buf_consume(&s->rbuf, 0); /* give the block back */
      return 0;
    }
    if (errno != EINTR) {
      int e = errno;
      if (e == EAGAIN) loop_blocked(&s->watch, CSOCK_READ);
      if (buf_len(s->rbuf) == 0) buf_consume(&s->rbuf, 0);
      return -e;
    }
  }
}

/*
** A buffered read (read.c, compat.c) that needs more bytes: fills the
** buffer, or waits for the descriptor.  0 when bytes came or the stream
** ended, else -errno; in a task a wait yields and k runs on resume.  A
** reader about to wait while another task waits in recv lets go of the
** socket and its cursor first: loop_wait then raises "busy".
*/
int stream_fill_or_wait(lua_State *L, csock_socket *s, size_t want, double deadline,
                        lua_KContext ctx, lua_KFunction k) {
  int e = stream_fill(s, want);
  if (e > 0 || (e == 0 && s->eof)) return 0;
  if (e != -EAGAIN && e != -XPORT_WANT_WRITE) return e;
  if (loop_waiting(&s->watch, CSOCK_READ) && loop_in_task(L)) {
    buf_set_scanned(s->rbuf, 0);
    loop_read_end(L, s); /* and the cursor goes back to the buffer's head */
  }
  return loop_wait(L, &s->watch, e == -EAGAIN ? CSOCK_READ : CSOCK_WRITE, deadline, ctx, k);
}
