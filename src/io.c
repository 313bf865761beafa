/*
** io.c - the socket methods that may wait: accept, connect, send, recv,
** sendto, recvfrom, read, write, lines.
**
** Each method checks its arguments, fixes the deadline of the operation
** once, and calls its continuation directly with LUA_OK, the way
** lbaselib's finishpcall is both called and resumed.  The continuation
** tries the system call; on EAGAIN it calls csock_wait, which inside a task
** yields (the continuation runs again when the loop resumes the task) and
** outside the loop polls and returns.  All state that must survive a wait
** lives on the Lua stack, in the socket, or in the lua_KContext.
*/
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "csock.h"

#define IOV_BATCH 64
#define READ_CHUNK 4096
#define FILL_MAX (64 * 1024)   /* the most one fill makes room for: what one recv takes */
#define DIRECT_MIN (16 * 1024) /* read(n) from this n up may go straight to the kernel */

/* At the start of a continuation: the reason the task was woken, 0 if ready. */
static int resumed(lua_State *L, int status, csock_socket *s) {
  if (status == LUA_YIELD) {
    int e = csock_woken(L);
    if (e) return e;
  }
  return s->fd < 0 ? -EBADF : 0;
}

static int io_error(lua_State *L, int err) {
  if (err < 0) err = -err;
  if (err == EBADF) return csock_failmsg(L, "socket closed", EBADF);
  return csock_failure(L, err);
}

/*
** A read() holds a cursor into s's buffer (loop_read_begin): a second
** reader -- another task, or a finalizer that the read's own allocations
** ran -- would move the bytes under it.
*/
static void check_not_busy(lua_State *L, const csock_socket *s) {
  if (s->rbusy) luaL_error(L, "socket is busy: another task is reading from it");
}

/*
** After a call failed with errno e: 0 to try the call again (EINTR, or a
** wait for dir that ended ready), else the error to report.  EAGAIN marks
** the direction drained and waits; in a task the wait yields and k runs
** when the task is resumed.
*/
static int again_or_fail(lua_State *L, csock_socket *s, int dir, int e, lua_KContext ctx,
                         lua_KFunction k) {
  if (e == EINTR) return 0;
  if (e != EAGAIN) return e;
  if (dir == CSOCK_READ)
    s->rready = 0;
  else
    s->wready = 0;
  return csock_wait(L, s, dir, dir == CSOCK_READ ? s->rdeadline : s->wdeadline, ctx, k);
}

/*
** After a transport call (s->xport) failed with r: 0 when the wait it
** asked for ended ready, else the error.  A TLS read may wait to write.
*/
static int xport_wait(lua_State *L, csock_socket *s, long r, double deadline, lua_KContext ctx,
                      lua_KFunction k) {
  if (r == -XPORT_WANT_READ) return csock_wait(L, s, CSOCK_READ, deadline, ctx, k);
  if (r == -XPORT_WANT_WRITE) return csock_wait(L, s, CSOCK_WRITE, deadline, ctx, k);
  return (int)-r;
}

/* ---------------------------------------------------------------- accept */

#define ACCEPT_BACKOFF 1 /* ctx: paused once after running out of descriptors */
#define ACCEPT_NOADDR 2  /* ctx: the peer's address is not wanted (s:_accept) */
#define ACCEPT_BACKOFF_S 0.05

/* Out of descriptors or memory: retrying at once would only spin. */
static int accept_starved(int e) {
  return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

static int accept_k(lua_State *L, int status, lua_KContext ctx) {
  csock_socket *s = (csock_socket *)lua_touserdata(L, 1);
  csock_socket *c = (csock_socket *)lua_touserdata(L, 2);
  int e = resumed(L, status, s);
  while (e == 0) {
    if (!csock_ready(s, CSOCK_READ)) {
      e = csock_wait(L, s, CSOCK_READ, s->rdeadline, ctx, accept_k);
      continue;
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = accept4(s->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      c->fd = fd;
      sock_nodelay_later(c);
      if (ctx & ACCEPT_NOADDR) return 1;
      addr_push(L, (struct sockaddr *)&ss, len);
      return 2;
    }
    e = errno;
    if (e == EINTR || e == ECONNABORTED) {
      e = 0;
    } else if (e == EAGAIN) {
      s->rready = 0;
      ctx &= ~(lua_KContext)ACCEPT_BACKOFF;
      e = csock_wait(L, s, CSOCK_READ, s->rdeadline, ctx, accept_k);
    } else if (accept_starved(e) && !(ctx & ACCEPT_BACKOFF)) {
      /* pause before reporting, so a server that retries at once does not
         spin at 100% CPU and its other tasks get to close descriptors */
      ctx |= ACCEPT_BACKOFF;
      e = csock_pause(L, ACCEPT_BACKOFF_S, ctx, accept_k);
    } else {
      break;
    }
  }
  return io_error(L, e);
}

static int accept_start(lua_State *L, lua_KContext ctx) {
  csock_socket *s = sock_checkopen(L, 1);
  lua_settop(L, 1);
  s->rdeadline = sock_deadline(s);
  sock_push_from_method(L, s->family, s->type); /* owns the descriptor from birth */
  return accept_k(L, LUA_OK, ctx);
}

int io_accept(lua_State *L) { return accept_start(L, 0); }

/*
** s:_accept(): s:accept() without the peer's address, internal to
** csock.http, which has no use for it: the address table and its text are
** ~1,800 instructions of a connection (callgrind).
*/
static int io_accept_bare(lua_State *L) { return accept_start(L, ACCEPT_NOADDR); }

/* ---------------------------------------------------------------- connect */

/*
** Keeps an address on the stack as a userdata {len, sockaddr}, so that a
** continuation can use it again after a wait (C locals do not survive one).
*/
static void push_address_box(lua_State *L, const struct sockaddr_storage *ss, socklen_t len) {
  socklen_t *box = (socklen_t *)lua_newuserdatauv(L, sizeof len + sizeof *ss, 0);
  *box = len;
  memcpy(box + 1, ss, len);
}

enum { CONNECT_CHECK = 1, CONNECT_RETRY = 2 };

static int connected(lua_State *L, csock_socket *s) {
  sock_nodelay_later(s);
  lua_pushboolean(L, 1);
  return 1;
}

/* Stack: socket, address arguments..., sockaddr userdata (top). */
static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  csock_socket *s = (csock_socket *)lua_touserdata(L, 1);
  int e = resumed(L, status, s);
  while (e == 0) {
    if (ctx == CONNECT_CHECK) {
      socklen_t len = sizeof e;
      if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0) e = errno;
      if (e != 0) break;
      struct sockaddr_storage peer;
      len = sizeof peer;
      if (getpeername(s->fd, (struct sockaddr *)&peer, &len) == 0) return connected(L, s);
      if (errno != ENOTCONN) {
        e = errno;
        break;
      }
      e = csock_wait(L, s, CSOCK_WRITE, s->wdeadline, ctx, connect_k);
      continue;
    }
    socklen_t *len = (socklen_t *)lua_touserdata(L, -1);
    const struct sockaddr *sa = (const struct sockaddr *)(len + 1);
    if (connect(s->fd, sa, *len) == 0) return connected(L, s);
    e = errno;
    if (e == EINTR || e == EINPROGRESS || e == EALREADY) {
      ctx = CONNECT_CHECK; /* completion is reported through SO_ERROR */
      e = csock_wait(L, s, CSOCK_WRITE, s->wdeadline, ctx, connect_k);
    } else if (e == EAGAIN) { /* a unix listener's backlog is full: try again */
      ctx = CONNECT_RETRY;
      e = csock_wait(L, s, CSOCK_WRITE, s->wdeadline, ctx, connect_k);
    } else if (e == EISCONN && ctx != 0) {
      return connected(L, s);
    }
  }
  return io_error(L, e);
}

int io_connect(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  struct sockaddr_storage ss;
  socklen_t len;
  int r = addr_from_args(L, 2, s->family, s->type, &ss, &len);
  if (r == ADDR_LOOKUP) return resolve_then(L, 2, s->family, s->type, sock_deadline(s), io_connect);
  if (r != 0) return addr_pusherror(L, r);
  push_address_box(L, &ss, len);
  s->wdeadline = sock_deadline(s);
  return connect_k(L, LUA_OK, 0);
}

/* ---------------------------------------------------------------- send */

/* The bytes of data:sub(i, j), with string.sub's rules for i and j. */
static const char *sub_range(lua_State *L, size_t *n) {
  size_t len;
  const char *data = lua_tolstring(L, 2, &len);
  lua_Integer i = csock_optinteger(L, 3, 1), j = csock_optinteger(L, 4, -1);
  lua_Integer l = (lua_Integer)len;
  if (i < 0) i = i < -l ? 1 : l + i + 1;
  if (i == 0) i = 1;
  if (j < 0) j = j < -l ? 0 : l + j + 1;
  if (j > l) j = l;
  *n = i > j ? 0 : (size_t)(j - i + 1);
  return i > j ? data : data + (i - 1);
}

/* Stack: socket, data, i, j.  Sends data:sub(i, j) once, waiting if needed. */
static int send_k(lua_State *L, int status, lua_KContext ctx) {
  csock_socket *s = (csock_socket *)lua_touserdata(L, 1);
  size_t n;
  const char *data = sub_range(L, &n);
  int e = resumed(L, status, s);
  while (e == 0) {
    if (!csock_ready(s, CSOCK_WRITE)) {
      e = csock_wait(L, s, CSOCK_WRITE, s->wdeadline, ctx, send_k);
      continue;
    }
    sock_before_send(s);
    if (s->xport != NULL) {
      long w = s->xport->send(s, data, n);
      if (w >= 0) {
        lua_pushinteger(L, w);
        return 1;
      }
      e = xport_wait(L, s, w, s->wdeadline, ctx, send_k);
      continue;
    }
    ssize_t w = send(s->fd, data, n, MSG_NOSIGNAL);
    if (w >= 0) {
      if ((size_t)w < n) s->wready = 0;
      lua_pushinteger(L, w);
      return 1;
    }
    e = again_or_fail(L, s, CSOCK_WRITE, errno, ctx, send_k);
  }
  return io_error(L, e);
}

int io_send(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  csock_checkstring(L, 2);
  csock_optinteger(L, 3, 1);
  csock_optinteger(L, 4, -1);
  lua_settop(L, 4);
  s->wdeadline = sock_deadline(s);
  return send_k(L, LUA_OK, 0);
}

/* ---------------------------------------------------------------- sendto */

/* Stack: socket, data, address arguments..., sockaddr userdata (top). */
static int sendto_k(lua_State *L, int status, lua_KContext ctx) {
  csock_socket *s = (csock_socket *)lua_touserdata(L, 1);
  size_t n;
  const char *data = lua_tolstring(L, 2, &n);
  socklen_t *len = (socklen_t *)lua_touserdata(L, -1);
  const struct sockaddr *sa = (const struct sockaddr *)(len + 1);
  int e = resumed(L, status, s);
  while (e == 0) {
    sock_before_send(s);
    if (s->xport != NULL) { /* a TLS stream is connected: the address goes unused, as in TCP */
      long r = s->xport->send(s, data, n);
      if (r >= 0) {
        lua_pushinteger(L, r);
        return 1;
      }
      e = xport_wait(L, s, r, s->wdeadline, ctx, sendto_k);
      continue;
    }
    ssize_t w = sendto(s->fd, data, n, MSG_NOSIGNAL, sa, *len);
    if (w >= 0) {
      lua_pushinteger(L, w);
      return 1;
    }
    e = again_or_fail(L, s, CSOCK_WRITE, errno, ctx, sendto_k);
  }
  return io_error(L, e);
}

int io_sendto(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  csock_checkstring(L, 2);
  struct sockaddr_storage ss;
  socklen_t len;
  int r = addr_from_args(L, 3, s->family, s->type, &ss, &len);
  if (r == ADDR_LOOKUP) return resolve_then(L, 3, s->family, s->type, sock_deadline(s), io_sendto);
  if (r != 0) return addr_pusherror(L, r);
  lua_settop(L, s->family == AF_UNIX ? 3 : 4);
  push_address_box(L, &ss, len);
  s->wdeadline = sock_deadline(s);
  return sendto_k(L, LUA_OK, 0);
}

/* ---------------------------------------------------------------- recv */

static lua_Integer check_size(lua_State *L, int idx, lua_Integer dflt) {
  lua_Integer n = csock_optinteger(L, idx, dflt);
  csock_argcheck(L, n > 0, idx, "size must be positive");
  return n;
}

/* Pushes up to want of the bytes read ahead into s's buffer, and consumes them. */
static void push_buffered(lua_State *L, csock_socket *s, size_t want) {
  size_t n = buf_len(&s->rbuf) < want ? buf_len(&s->rbuf) : want;
  lua_pushlstring(L, buf_data(&s->rbuf), n);
  buf_consume(&s->rbuf, n);
}

/*
** Stack: socket, n.  Buffered bytes first, then one recv(2).  A new call
** tries recv even when the last read came back short: in a stream (an echo,
** a download) more bytes have usually come in meanwhile, and asking costs
** one call where waiting costs a turn of the loop and an epoll_wait (echo:
** epoll_waits per GB 4,000 -> 1,750, c-epoll's 2,100; per CPU-second +8 %).
** read() keeps trusting a short read: a request parser would only get
** EAGAIN for it.
*/
static int recv_k(lua_State *L, int status, lua_KContext ctx) {
  csock_socket *s = (csock_socket *)lua_touserdata(L, 1);
  size_t want = (size_t)ctx;
  int e = resumed(L, status, s);
  if (e == 0 && buf_len(&s->rbuf) > 0) {
    push_buffered(L, s, want);
    return 1;
  }
  if (e == 0 && s->eof && s->type == SOCK_STREAM) {
    lua_pushliteral(L, "");
    return 1;
  }
  int eager = status == LUA_OK;
  while (e == 0) {
    if (!eager && !csock_ready(s, CSOCK_READ)) {
      e = csock_wait(L, s, CSOCK_READ, s->rdeadline, ctx, recv_k);
      continue;
    }
    eager = 0;
    size_t room;
    char *p = buf_string_space(want, &room);
    size_t ask = want < room ? want : room;
    if (s->xport != NULL) {
      long r = s->xport->recv(s, p, ask);
      if (r >= 0) {
        if (r == 0) s->eof = 1;
        buf_push_string(L, p, (size_t)r);
        return 1;
      }
      e = xport_wait(L, s, r, s->rdeadline, ctx, recv_k);
      continue;
    }
    ssize_t r = recv(s->fd, p, ask, 0);
    if (r >= 0) {
      if (r == 0 && s->type == SOCK_STREAM) s->eof = 1;
      if ((size_t)r < ask && s->type == SOCK_STREAM) csock_drained(s);
      buf_push_string(L, p, (size_t)r);
      return 1;
    }
    e = again_or_fail(L, s, CSOCK_READ, errno, ctx, recv_k);
  }
  return io_error(L, e);
}

int io_recv(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  lua_Integer n = check_size(L, 2, 65536);
  check_not_busy(L, s);
  lua_settop(L, 1);
  s->rdeadline = sock_deadline(s);
  return recv_k(L, LUA_OK, (lua_KContext)(n > INT_MAX ? INT_MAX : n));
}

/* Pushes the address of s's peer, or a bare {family =} when it has none. */
static void push_peer(lua_State *L, const csock_socket *s) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  memset(&ss, 0, sizeof ss);
  if (getpeername(s->fd, (struct sockaddr *)&ss, &len) < 0 || len == 0) {
    ss.ss_family = (sa_family_t)s->family;
    len = sizeof(sa_family_t);
  }
  addr_push(L, (struct sockaddr *)&ss, len);
}

static int recvfrom_k(lua_State *L, int status, lua_KContext ctx) {
  csock_socket *s = (csock_socket *)lua_touserdata(L, 1);
  size_t want = (size_t)ctx;
  int e = resumed(L, status, s);
  if (e == 0 && buf_len(&s->rbuf) > 0) { /* a stream's buffered bytes first, like recv */
    push_buffered(L, s, want);
    push_peer(L, s);
    return 2;
  }
  while (e == 0) {
    size_t room;
    char *p = buf_scratch(&room);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (s->xport != NULL) { /* plaintext from the connected peer */
      long x = s->xport->recv(s, p, want < room ? want : room);
      if (x >= 0) {
        if (x == 0) s->eof = 1;
        lua_pushlstring(L, p, (size_t)x);
        push_peer(L, s);
        return 2;
      }
      e = xport_wait(L, s, x, s->rdeadline, ctx, recvfrom_k);
      continue;
    }
    ssize_t r = recvfrom(s->fd, p, want < room ? want : room, 0, (struct sockaddr *)&ss, &len);
    if (r >= 0) {
      lua_pushlstring(L, p, (size_t)r);
      if (len == 0 || ss.ss_family == AF_UNSPEC) /* a stream, or an unnamed peer */
        push_peer(L, s);
      else
        addr_push(L, (struct sockaddr *)&ss, len);
      return 2;
    }
    e = again_or_fail(L, s, CSOCK_READ, errno, ctx, recvfrom_k);
  }
  return io_error(L, e);
}

int io_recvfrom(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  lua_Integer n = check_size(L, 2, 65536);
  check_not_busy(L, s);
  lua_settop(L, 1);
  s->rdeadline = sock_deadline(s);
  return recvfrom_k(L, LUA_OK, (lua_KContext)(n > INT_MAX ? INT_MAX : n));
}

/* ---------------------------------------------------------------- read */

/* fill through a transport: -EAGAIN to wait to read, -XPORT_WANT_WRITE to write. */
static int fill_xport(csock_socket *s, char *p, size_t avail) {
  long r = s->xport->recv(s, p, avail);
  if (r > 0) {
    buf_commit(&s->rbuf, (size_t)r);
    return (int)r;
  }
  if (buf_len(&s->rbuf) == 0) buf_consume(&s->rbuf, 0); /* give the block back */
  if (r == 0) s->eof = 1;
  return r == -XPORT_WANT_READ ? -EAGAIN : (int)r;
}

/*
** Reads more bytes into the buffer: > 0 read, 0 end of stream, -errno.
** want: the room to make first (fill_hint), from READ_CHUNK up to FILL_MAX,
** so that read(65536) takes one recv(2) where the buffer's own growth took
** three or four.
*/
int fill(csock_socket *s, size_t want) {
  if (!csock_ready(s, CSOCK_READ)) return -EAGAIN;
  if (want < READ_CHUNK) want = READ_CHUNK;
  if (want > FILL_MAX) want = FILL_MAX;
  size_t avail;
  char *p = buf_reserve(&s->rbuf, want, &avail);
  if (p == NULL) return -ENOMEM;
  if (s->xport != NULL) return fill_xport(s, p, avail);
  for (;;) {
    ssize_t r = recv(s->fd, p, avail, 0);
    if (r > 0) {
      if ((size_t)r < avail && s->type == SOCK_STREAM) csock_drained(s);
      buf_commit(&s->rbuf, (size_t)r);
      return (int)(r > INT_MAX ? INT_MAX : r);
    }
    if (r == 0) {
      s->eof = 1;
      if (buf_len(&s->rbuf) == 0) buf_consume(&s->rbuf, 0); /* give the block back */
      return 0;
    }
    if (errno != EINTR) {
      int e = errno;
      if (e == EAGAIN) s->rready = 0;
      if (buf_len(&s->rbuf) == 0) buf_consume(&s->rbuf, 0);
      return -e;
    }
  }
}

enum { FMT_PUSHED, FMT_NEED, FMT_EOF, FMT_FAIL, FMT_TOOLONG };

/*
** The formats of one read take bytes at s->rpos (from the buffer's head)
** and consume them only when the whole read succeeds, so a read that
** fails or times out part-way leaves every byte in the buffer.
*/
static const char *unread(const csock_socket *s, size_t *len) {
  *len = buf_len(&s->rbuf) - s->rpos;
  return buf_data(&s->rbuf) + s->rpos;
}

static void take(csock_socket *s, size_t n) {
  s->rpos += n;
  s->rbuf.scanned = 0;
}

/* Starts a read at the buffer's head (also what a failed read goes back to). */
static void read_begin(csock_socket *s) {
  s->rpos = 0;
  s->rbuf.scanned = 0;
}

/* The read succeeded: the bytes its formats took leave the buffer. */
static void read_commit(csock_socket *s) {
  if (s->fd >= 0) buf_consume(&s->rbuf, s->rpos);
  read_begin(s);
}

static int read_line(lua_State *L, csock_socket *s, int chop) {
  size_t len;
  const char *data = unread(s, &len);
  size_t from = s->rbuf.scanned;
  const char *nl = len > from ? memchr(data + from, '\n', len - from) : NULL;
  if (nl != NULL) {
    size_t n = (size_t)(nl - data);
    if (n > s->maxline) return FMT_TOOLONG;
    lua_pushlstring(L, data, chop ? n : n + 1);
    take(s, n + 1);
    return FMT_PUSHED;
  }
  s->rbuf.scanned = len;
  if (len > s->maxline) return FMT_TOOLONG;
  if (!s->eof) return FMT_NEED;
  if (len == 0) return FMT_EOF;
  lua_pushlstring(L, data, len); /* the last line, without its newline */
  take(s, len);
  return FMT_PUSHED;
}

static int read_count(lua_State *L, csock_socket *s, lua_Integer n) {
  size_t len;
  const char *data = unread(s, &len);
  if (n == 0) { /* like file:read(0): "" unless at end of stream */
    if (len > 0) {
      lua_pushliteral(L, "");
      return FMT_PUSHED;
    }
    return s->eof ? FMT_EOF : FMT_NEED;
  }
  if (len >= (size_t)n || (s->eof && len > 0)) {
    size_t n_take = len < (size_t)n ? len : (size_t)n;
    lua_pushlstring(L, data, n_take);
    take(s, n_take);
    return FMT_PUSHED;
  }
  return s->eof ? FMT_EOF : FMT_NEED;
}

static int read_all(lua_State *L, csock_socket *s) {
  if (!s->eof) return FMT_NEED;
  size_t len;
  const char *data = unread(s, &len);
  lua_pushlstring(L, data, len);
  take(s, len);
  return FMT_PUSHED;
}

#define MAXNUMERAL 200 /* liolib's L_MAXLENNUM */

static size_t skip_digits(const char *d, size_t len, size_t i, int hex) {
  while (i < len && (hex ? isxdigit((unsigned char)d[i]) : isdigit((unsigned char)d[i]))) i++;
  return i;
}

static size_t skip_char(const char *d, size_t len, size_t i, const char *set) {
  return i < len && d[i] != '\0' && strchr(set, d[i]) != NULL ? i + 1 : i;
}

/*
** Where the numeral that starts at d[i] ends, read the way file:read("n")
** reads one: sign, "0x", digits, a point and digits, an exponent.
*/
static size_t numeral_end(const char *d, size_t len, size_t i) {
  int hex = 0;
  size_t digits = 0;
  i = skip_char(d, len, i, "+-");
  if (i < len && d[i] == '0') {
    i++;
    if (skip_char(d, len, i, "xX") > i) {
      i++;
      hex = 1;
    } else {
      digits = 1;
    }
  }
  size_t j = skip_digits(d, len, i, hex);
  digits += j - i;
  i = j;
  if (i < len && d[i] == '.') {
    j = skip_digits(d, len, i + 1, hex);
    digits += j - i - 1;
    i = j;
  }
  if (digits > 0 && skip_char(d, len, i, hex ? "pP" : "eE") > i) {
    i = skip_char(d, len, i + 1, "+-");
    i = skip_digits(d, len, i, 0);
  }
  return i;
}

/*
** read("n"): blanks, then a numeral as a number; FMT_FAIL (a nil) if it is
** not one.  The blanks seen so far are kept in rbuf.scanned, so a peer
** that trickles them is not rescanned from the start at every fill, and
** more of them than maxline fail as an over-long line would: they are
** buffered until the read ends, and the buffer must not grow unbounded.
*/
static int read_number(lua_State *L, csock_socket *s) {
  size_t len;
  const char *data = unread(s, &len);
  size_t start = s->rbuf.scanned < len ? s->rbuf.scanned : len;
  while (start < len && isspace((unsigned char)data[start])) start++;
  if (start > s->maxline) return FMT_TOOLONG;
  s->rbuf.scanned = start;
  size_t end = numeral_end(data, len, start);
  if (end == len && !s->eof && end - start <= MAXNUMERAL) return FMT_NEED; /* may go on */
  if (end == start && start == len) return FMT_EOF;
  if (end - start > MAXNUMERAL) { /* as liolib: the first MAXNUMERAL bytes go, and it fails */
    take(s, start + MAXNUMERAL);
    return FMT_FAIL;
  }
  char text[MAXNUMERAL + 1];
  memcpy(text, data + start, end - start);
  text[end - start] = '\0';
  take(s, end);
  return lua_stringtonumber(L, text) != 0 ? FMT_PUSHED : FMT_FAIL;
}

/* The letter of a string format ('l', 'L', 'a' or 'n'; Lua 5.1/5.2's "*l" too), or 0. */
static int format_letter(const char *p) {
  if (*p == '*') p++;
  return (*p == 'l' || *p == 'L' || *p == 'a' || *p == 'n') && p[1] == '\0' ? *p : 0;
}

static int read_letter(lua_State *L, csock_socket *s, int letter) {
  switch (letter) {
    case 'l': return read_line(L, s, 1);
    case 'L': return read_line(L, s, 0);
    case 'n': return read_number(L, s);
    default: return read_all(L, s);
  }
}

static int read_one(lua_State *L, csock_socket *s, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) return read_count(L, s, lua_tointeger(L, idx));
  return read_letter(L, s, format_letter(lua_tostring(L, idx)));
}

/*
** The continuation context of a read: the number of formats, and for a
** read of one letter format, that letter, so that a read that waits and
** resumes does not decode its format again on every pass (keep-alive: a
** few hundred instructions per request).
*/
#define CTX_NFMT(ctx) ((int)((ctx)&0xffff))
#define CTX_LETTER(ctx) ((int)(((ctx) >> 16) & 0xff))

static lua_KContext read_context(lua_State *L, int nfmt) {
  int letter = nfmt == 1 && lua_type(L, 2) == LUA_TSTRING ? format_letter(lua_tostring(L, 2)) : 0;
  return (lua_KContext)nfmt | ((lua_KContext)letter << 16);
}

/* Checks the formats; a count that is a float with an integral value
   becomes an integer, as file:read accepts it. */
static void check_formats(lua_State *L, int first, int last) {
  for (int i = first; i <= last; i++) {
    if (lua_type(L, i) == LUA_TNUMBER) {
      int isint;
      lua_Integer n = lua_tointegerx(L, i, &isint);
      csock_argcheck(L, isint && n >= 0, i, "invalid format");
      lua_pushinteger(L, n);
      lua_replace(L, i);
      continue;
    }
    const char *p = csock_checkstring(L, i);
    csock_argcheck(L, format_letter(p) != 0, i, "invalid format");
  }
}

enum { READ_DONE, READ_ERROR };

/*
** How much room the next fill should make for the format at idx (or for
** letter, the format's letter when the read context carries it): what a
** count still lacks; for a line or "a", as much as the read has gathered
** already, so that a long line or a big body is read in growing steps.
*/
static size_t fill_hint(lua_State *L, const csock_socket *s, int letter, int idx) {
  size_t len;
  unread(s, &len);
  if (letter || lua_type(L, idx) != LUA_TNUMBER) return len;
  lua_Integer n = lua_tointeger(L, idx);
  return n > 0 && (lua_Unsigned)n > len ? (size_t)((lua_Unsigned)n - len) : 0;
}

/*
** Stack: socket, nfmt formats, results so far.  Runs the formats in turn,
** filling the buffer and waiting (through k) when one needs more bytes.
** READ_DONE: results pushed (a nil ends them at end of stream) and their
** bytes consumed; READ_ERROR: *err holds the errno (EMSGSIZE for an
** over-long line) and the buffer is as it was.
*/
static int read_formats(lua_State *L, int status, lua_KContext ctx, int *err, lua_KFunction k) {
  csock_socket *s = (csock_socket *)lua_touserdata(L, 1);
  int nfmt = CTX_NFMT(ctx), letter = CTX_LETTER(ctx);
  int e = resumed(L, status, s);
  while (e == 0) {
    int done = lua_gettop(L) - 1 - nfmt;
    int r = done >= nfmt ? FMT_PUSHED
            : letter     ? read_letter(L, s, letter)
                         : read_one(L, s, 2 + done);
    if (s->fd < 0) { /* a finalizer the result's allocation ran closed s */
      e = -EBADF;
      break;
    }
    if (done >= nfmt || r == FMT_EOF || r == FMT_FAIL) {
      if (r == FMT_EOF || r == FMT_FAIL) lua_pushnil(L);
      read_commit(s);
      loop_read_end(s);
      return READ_DONE;
    }
    if (r == FMT_PUSHED) continue;
    if (r == FMT_TOOLONG) {
      e = -EMSGSIZE;
      break;
    }
    e = fill(s, fill_hint(L, s, letter, 2 + done));
    if (e > 0 || (e == 0 && s->eof)) {
      e = 0;
    } else if (e == -EAGAIN || e == -XPORT_WANT_WRITE) {
      /* another task waits in recv: csock_wait raises, so let go first */
      if (s->reader != NULL && csock_in_task(L)) {
        read_begin(s);
        loop_read_end(s);
      }
      e = csock_wait(L, s, e == -EAGAIN ? CSOCK_READ : CSOCK_WRITE, s->rdeadline, ctx, k);
    }
  }
  read_begin(s);
  loop_read_end(s);
  *err = e < 0 ? -e : e;
  return READ_ERROR;
}

static int read_error(lua_State *L, int err) {
  if (err == EMSGSIZE) return csock_failmsg(L, "line too long", EMSGSIZE);
  return io_error(L, err);
}

static int read_k(lua_State *L, int status, lua_KContext ctx) {
  int err = 0, nfmt = CTX_NFMT(ctx);
  if (read_formats(L, status, ctx, &err, read_k) == READ_ERROR) {
    lua_settop(L, 1 + nfmt);
    return read_error(L, err);
  }
  return lua_gettop(L) - 1 - nfmt;
}

/*
** read() or read("l"/"L") whose line is already in the buffer: the common
** case of a request parser, answered without the general machinery.
*/
static int read_buffered_line(lua_State *L, csock_socket *s, int nfmt) {
  int chop = 1;
  if (buf_len(&s->rbuf) == 0) return 0;
  if (nfmt == 1) {
    if (lua_type(L, 2) != LUA_TSTRING) return 0;
    int f = format_letter(lua_tostring(L, 2));
    if (f != 'l' && f != 'L') return 0;
    chop = f == 'l';
  }
  read_begin(s);
  s->rbusy = 1; /* for the finalizers the string's allocation may run */
  int r = read_line(L, s, chop);
  s->rbusy = 0;
  if (r != FMT_PUSHED) return 0;
  read_commit(s);
  return 1;
}

/*
** read(n) for a large n with nothing buffered: recv(2) straight into the
** string it will return (buf_string_space), as recv does, so a stream read
** in big counts is neither copied nor taken in small steps.  A short read
** asks again at once, as recv does (more has usually come in meanwhile).
** When all n bytes came, they are the answer (1).  When the kernel has no
** more yet, or the stream ended, what came moves to the buffer and the
** general path goes on from there (0): the block is shared, a waiting task
** cannot keep it.  -errno when recv fails (what came stays in the buffer).
*/
static int read_count_direct(lua_State *L, csock_socket *s) {
  if (lua_type(L, 2) != LUA_TNUMBER || s->type != SOCK_STREAM || s->eof || buf_len(&s->rbuf) > 0 ||
      s->xport != NULL || !csock_ready(s, CSOCK_READ))
    return 0;
  lua_Integer n = lua_tointeger(L, 2);
  size_t room, got = 0;
  int err = 0;
  if (n < DIRECT_MIN) return 0;
  char *p = buf_string_space((size_t)n, &room);
  if (room < (size_t)n) return 0; /* more than one read takes */
  while (got < (size_t)n) {
    ssize_t r = recv(s->fd, p + got, (size_t)n - got, 0);
    if (r > 0) {
      got += (size_t)r;
    } else if (r == 0) {
      s->eof = 1;
      csock_drained(s);
      break;
    } else if (errno != EINTR) {
      if (errno == EAGAIN) s->rready = 0;
      err = errno == EAGAIN ? 0 : errno;
      break;
    }
  }
  if (got == (size_t)n) {
    buf_push_string(L, p, got);
    return 1;
  }
  if (got > 0) { /* kept for the next read, even when this one fails */
    size_t avail;
    char *keep = buf_reserve(&s->rbuf, (size_t)n, &avail);
    if (keep == NULL) return luaL_error(L, "not enough memory");
    memcpy(keep, p, got);
    buf_commit(&s->rbuf, got);
  }
  return -err;
}

int io_read(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  int nfmt = lua_gettop(L) - 1;
  check_not_busy(L, s);
  if (nfmt <= 1 && read_buffered_line(L, s, nfmt)) return 1;
  if (nfmt == 0) {
    lua_pushliteral(L, "l");
    nfmt = 1;
  }
  csock_argcheck(L, nfmt <= 250, 252, "too many formats");
  check_formats(L, 2, 1 + nfmt);
  luaL_checkstack(L, nfmt + LUA_MINSTACK, "too many formats");
  s->rdeadline = sock_deadline(s);
  read_begin(s);
  if (nfmt == 1) {
    int direct = read_count_direct(L, s);
    if (direct != 0) return direct > 0 ? 1 : read_error(L, -direct);
  }
  loop_read_begin(L, s);
  return read_k(L, LUA_OK, read_context(L, nfmt));
}

/* lines: the iterator's upvalues are the socket and the formats. */
static int lines_k(lua_State *L, int status, lua_KContext ctx) {
  int err = 0, nfmt = CTX_NFMT(ctx);
  if (read_formats(L, status, ctx, &err, lines_k) == READ_ERROR) {
    lua_settop(L, 1 + nfmt);
    read_error(L, err);
    return luaL_error(L, "%s", lua_tostring(L, -2));
  }
  return lua_gettop(L) - 1 - nfmt;
}

static int lines_iter(lua_State *L) {
  int nfmt = (int)lua_tointeger(L, lua_upvalueindex(2));
  lua_settop(L, 0);
  luaL_checkstack(L, 2 * nfmt + LUA_MINSTACK, "too many formats");
  lua_pushvalue(L, lua_upvalueindex(1));
  csock_socket *s = (csock_socket *)lua_touserdata(L, 1);
  if (s->fd < 0) return luaL_error(L, "socket is already closed");
  check_not_busy(L, s);
  for (int i = 1; i <= nfmt; i++) lua_pushvalue(L, lua_upvalueindex(2 + i));
  if (nfmt == 1 && read_buffered_line(L, s, 1)) return 1;
  s->rdeadline = sock_deadline(s);
  read_begin(s);
  loop_read_begin(L, s);
  return lines_k(L, LUA_OK, read_context(L, nfmt));
}

int io_lines(lua_State *L) {
  sock_checkopen(L, 1);
  int nfmt = lua_gettop(L) - 1;
  if (nfmt == 0) {
    lua_pushliteral(L, "l");
    nfmt = 1;
  }
  csock_argcheck(L, nfmt <= 250, 252, "too many formats");
  check_formats(L, 2, 1 + nfmt);
  lua_pushinteger(L, nfmt);
  lua_insert(L, 2);
  lua_pushcclosure(L, lines_iter, 2 + nfmt);
  return 1;
}

/* ---------------------------------------------------------------- write */

static int write_fail(lua_State *L, int err, size_t sent) {
  io_error(L, err);
  lua_pushinteger(L, (lua_Integer)sent);
  return 4;
}

/*
** One send of the pieces through s's transport.  Small pieces are gathered
** into one block first: over TLS each send is a record of its own, and
** write(head, body) should not cost two records and two system calls.
*/
static long write_xport(csock_socket *s, const struct iovec *iov, int n) {
  size_t room, used = 0;
  char *block = buf_scratch(&room);
  if (room > XPORT_CHUNK) room = XPORT_CHUNK;
  if (n == 1 || iov[0].iov_len >= room) return s->xport->send(s, iov[0].iov_base, iov[0].iov_len);
  for (int i = 0; i < n && used < room; i++) {
    size_t k = iov[i].iov_len < room - used ? iov[i].iov_len : room - used;
    memcpy(block + used, iov[i].iov_base, k);
    used += k;
  }
  return s->xport->send(s, block, used);
}

/* Stack: socket, strings.  ctx counts the bytes already sent. */
static int write_k(lua_State *L, int status, lua_KContext ctx) {
  csock_socket *s = (csock_socket *)lua_touserdata(L, 1);
  size_t sent = (size_t)ctx;
  int top = lua_gettop(L);
  int e = resumed(L, status, s);
  while (e == 0) {
    struct iovec iov[IOV_BATCH];
    int n = 0;
    size_t skip = sent;
    for (int i = 2; i <= top && n < IOV_BATCH; i++) {
      size_t len;
      const char *p = lua_tolstring(L, i, &len);
      if (skip >= len) {
        skip -= len;
        continue;
      }
      iov[n].iov_base = (void *)(p + skip);
      iov[n].iov_len = len - skip;
      skip = 0;
      n++;
    }
    if (n == 0) {
      lua_settop(L, 1);
      return 1;
    }
    if (!csock_ready(s, CSOCK_WRITE)) {
      e = csock_wait(L, s, CSOCK_WRITE, s->wdeadline, (lua_KContext)sent, write_k);
      continue;
    }
    ssize_t w;
    sock_before_send(s);
    if (s->xport != NULL) {
      long r = write_xport(s, iov, n);
      if (r >= 0) {
        sent += (size_t)r;
        continue;
      }
      e = xport_wait(L, s, r, s->wdeadline, (lua_KContext)sent, write_k);
      continue;
    }
    if (n == 1) {
      w = send(s->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
    } else {
      struct msghdr msg;
      memset(&msg, 0, sizeof msg);
      msg.msg_iov = iov;
      msg.msg_iovlen = (size_t)n;
      w = sendmsg(s->fd, &msg, MSG_NOSIGNAL);
    }
    if (w >= 0) {
      size_t asked = 0;
      for (int i = 0; i < n; i++) asked += iov[i].iov_len;
      if ((size_t)w < asked) s->wready = 0;
      sent += (size_t)w;
      continue;
    }
    e = again_or_fail(L, s, CSOCK_WRITE, errno, (lua_KContext)sent, write_k);
  }
  return write_fail(L, e, sent);
}

/*
** write(str), the common case, tried with one send and no iovec: 1 when
** it all went, 0 to go on with write_k (*sent bytes went), or -errno.
*/
static int write_one(lua_State *L, csock_socket *s, size_t *sent) {
  size_t len;
  const char *p = lua_tolstring(L, 2, &len);
  if (len == 0 || s->xport != NULL || !csock_ready(s, CSOCK_WRITE)) return 0;
  sock_before_send(s);
  ssize_t w = send(s->fd, p, len, MSG_NOSIGNAL);
  if (w < 0) {
    if (errno == EAGAIN) s->wready = 0;
    return errno == EAGAIN || errno == EINTR ? 0 : -errno;
  }
  *sent = (size_t)w;
  if ((size_t)w < len) s->wready = 0;
  return (size_t)w == len;
}

/*
** Argument i of write as the string it sends.  Numbers are written as
** file:write writes them: a float with LUA_NUMBER_FMT ("%.14g", so 3.0 is
** "3"), not as tostring shows it ("3.0").
*/
static void write_arg_to_string(lua_State *L, int i) {
  if (lua_type(L, i) == LUA_TNUMBER && !lua_isinteger(L, i)) {
    char text[64];
    snprintf(text, sizeof text, LUA_NUMBER_FMT, (LUAI_UACNUMBER)lua_tonumber(L, i));
    lua_pushstring(L, text);
    lua_replace(L, i);
    return;
  }
  csock_checklstring(L, i, NULL); /* integers become strings in place */
}

int io_write(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  int top = lua_gettop(L);
  size_t sent = 0;
  if (top == 2 && lua_type(L, 2) == LUA_TSTRING) {
    int r = write_one(L, s, &sent);
    if (r < 0) return write_fail(L, -r, 0);
    if (r > 0) {
      lua_settop(L, 1);
      return 1;
    }
  }
  for (int i = 2; i <= top; i++) write_arg_to_string(L, i);
  s->wdeadline = sock_deadline(s);
  return write_k(L, LUA_OK, (lua_KContext)sent);
}

const luaL_Reg io_methods[] = {
    {"accept", io_accept}, {"connect", io_connect},     {"send", io_send}, {"recv", io_recv},
    {"sendto", io_sendto}, {"recvfrom", io_recvfrom},   {"read", io_read}, {"write", io_write},
    {"lines", io_lines},   {"_accept", io_accept_bare}, {NULL, NULL},
};
