/*
** io.c - the direct socket calls that may wait: accept, connect, send,
** recv, sendto, recvfrom, write (buffered reading is read.c's).
**
** Each method checks its arguments and calls its continuation directly
** with LUA_OK, the way lbaselib's finishpcall is both called and resumed.
** The continuation fixes the deadline of the operation on that first pass
** (sock_op_deadline) and tries the system call; on EAGAIN it calls
** loop_wait, which inside a task yields (the continuation runs again when
** the loop resumes the task, and finds the deadline where the wait left
** it) and outside the loop polls and returns.  All state that must survive
** a wait lives on the Lua stack, in the socket, or in the lua_KContext.
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

/* ---------------------------------------------------------------- accept */

#define ACCEPT_BACKOFF 1 /* ctx: paused once after running out of descriptors */
#define ACCEPT_NOADDR 2  /* ctx: the peer's address is not wanted (s:accept(false)) */
#define ACCEPT_BACKOFF_S 0.05

/* Out of descriptors or memory: retrying at once would only spin. */
static int accept_starved(int e) {
  return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

static int accept_k(lua_State *L, int status, lua_KContext ctx);

/*
** Stack: the listening socket s, the new socket c (closed until accept4
** gives it a descriptor), and after a pause the deadline: a pause's timer
** takes the task's own, where a wait leaves the deadline (loop_op_deadline).
*/
static int accept_run(lua_State *L, csock_socket *s, csock_socket *c, int status,
                      lua_KContext ctx) {
  double deadline = sock_op_deadline(L, s, status);
  if (status == LUA_YIELD && (ctx & ACCEPT_BACKOFF)) { /* resumed from the pause */
    deadline = lua_tonumber(L, 3);
    lua_settop(L, 2);
  }
  int e = stream_resumed(L, status, s);
  while (e == 0) {
    if (!loop_ready(&s->watch, CSOCK_READ)) {
      e = loop_wait_shared(L, &s->watch, CSOCK_READ, deadline, ctx, accept_k);
      continue;
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int noaddr = (ctx & ACCEPT_NOADDR) != 0; /* then the kernel need not copy the address out */
    int fd = accept4(s->fd, noaddr ? NULL : (struct sockaddr *)&ss, noaddr ? NULL : &len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      c->fd = fd;
      sock_nodelay_later(c);
      if (noaddr) return 1;
      addr_push_from_method(L, (struct sockaddr *)&ss, len);
      return 2;
    }
    e = errno;
    if (e == EINTR || e == ECONNABORTED) {
      e = 0;
    } else if (e == EAGAIN) {
      loop_blocked(&s->watch, CSOCK_READ);
      ctx &= ~(lua_KContext)ACCEPT_BACKOFF;
      e = loop_wait_shared(L, &s->watch, CSOCK_READ, deadline, ctx, accept_k);
    } else if (accept_starved(e) && !(ctx & ACCEPT_BACKOFF)) {
      /* pause before reporting, so a server that retries at once does not
         spin at 100% CPU and its other tasks get to close descriptors */
      ctx |= ACCEPT_BACKOFF;
      lua_pushnumber(L, deadline);
      e = loop_pause(L, ACCEPT_BACKOFF_S, ctx, accept_k);
      lua_settop(L, 2); /* the pause returned (outside a task): the deadline stays here */
    } else {
      break;
    }
  }
  return stream_error(L, s, e);
}

static int accept_k(lua_State *L, int status, lua_KContext ctx) {
  return accept_run(L, (csock_socket *)lua_touserdata(L, 1), (csock_socket *)lua_touserdata(L, 2),
                    status, ctx);
}

static int accept_start(lua_State *L, lua_KContext ctx) {
  csock_socket *s = sock_checkopen(L, 1);
  if (lua_gettop(L) != 1) {
    if (!lua_isnoneornil(L, 2)) {
      csock_checktype(L, 2, LUA_TBOOLEAN);
      if (!lua_toboolean(L, 2)) ctx |= ACCEPT_NOADDR;
    }
    lua_settop(L, 1);
  }
  csock_socket *c =
      sock_push_from_method(L, s->family, s->type); /* owns the descriptor from birth */
  return accept_run(L, s, c, LUA_OK, ctx);
}

/*
** s:accept([address]): address false leaves the peer's address out.  Its
** table and text are a large part of what a short connection costs in user
** space, and most servers never look at it (getpeername still can).
*/
int io_accept(lua_State *L) { return accept_start(L, 0); }

/* s:_accept(): s:accept(false), kept for csock.http, which calls it by this name. */
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
  double deadline = sock_op_deadline(L, s, status);
  int e = stream_resumed(L, status, s);
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
      e = loop_wait(L, &s->watch, CSOCK_WRITE, deadline, ctx, connect_k);
      continue;
    }
    socklen_t *len = (socklen_t *)lua_touserdata(L, -1);
    const struct sockaddr *sa = (const struct sockaddr *)(len + 1);
    if (connect(s->fd, sa, *len) == 0) return connected(L, s);
    e = errno;
    if (e == EINTR || e == EINPROGRESS || e == EALREADY) {
      ctx = CONNECT_CHECK; /* completion is reported through SO_ERROR */
      e = loop_wait(L, &s->watch, CSOCK_WRITE, deadline, ctx, connect_k);
    } else if (e == EAGAIN) { /* a unix listener's backlog is full: try again */
      ctx = CONNECT_RETRY;
      e = loop_wait(L, &s->watch, CSOCK_WRITE, deadline, ctx, connect_k);
    } else if (e == EISCONN && ctx != 0) {
      return connected(L, s);
    }
  }
  return stream_error(L, s, e);
}

int io_connect(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  struct sockaddr_storage ss;
  socklen_t len;
  int r = addr_from_args(L, 2, s->family, s->type, &ss, &len);
  if (r == ADDR_LOOKUP) return resolve_then(L, 2, s->family, s->type, sock_deadline(s), io_connect);
  if (r != 0) return addr_pusherror(L, r);
  push_address_box(L, &ss, len);
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
  double deadline = sock_op_deadline(L, s, status);
  int e = stream_resumed(L, status, s);
  while (e == 0) {
    if (!loop_ready(&s->watch, CSOCK_WRITE)) {
      e = loop_wait(L, &s->watch, CSOCK_WRITE, deadline, ctx, send_k);
      continue;
    }
    if (s->xport != NULL) {
      sock_before_send(s);
      long w = s->xport->ops->send(s, data, n);
      if (w >= 0) {
        lua_pushinteger(L, w);
        return 1;
      }
      e = stream_xport_wait(L, s, w, deadline, ctx, send_k);
      continue;
    }
    ssize_t w = send(s->fd, data, n, sock_send_flags(L, s));
    if (w >= 0) {
      if ((size_t)w < n) loop_blocked(&s->watch, CSOCK_WRITE);
      lua_pushinteger(L, w);
      return 1;
    }
    e = stream_again_or_fail(L, s, CSOCK_WRITE, errno, deadline, ctx, send_k);
  }
  return stream_error(L, s, e);
}

int io_send(lua_State *L) {
  sock_checkopen(L, 1);
  csock_checkstring(L, 2);
  csock_optinteger(L, 3, 1);
  csock_optinteger(L, 4, -1);
  lua_settop(L, 4);
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
  double deadline = sock_op_deadline(L, s, status);
  int e = stream_resumed(L, status, s);
  while (e == 0) {
    sock_before_send(s);
    if (s->xport != NULL) { /* a TLS stream is connected: the address goes unused, as in TCP */
      long r = s->xport->ops->send(s, data, n);
      if (r >= 0) {
        lua_pushinteger(L, r);
        return 1;
      }
      e = stream_xport_wait(L, s, r, deadline, ctx, sendto_k);
      continue;
    }
    ssize_t w = sendto(s->fd, data, n, MSG_NOSIGNAL, sa, *len);
    if (w >= 0) {
      lua_pushinteger(L, w);
      return 1;
    }
    e = stream_again_or_fail(L, s, CSOCK_WRITE, errno, deadline, ctx, sendto_k);
  }
  return stream_error(L, s, e);
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
  size_t n = buf_len(s->rbuf) < want ? buf_len(s->rbuf) : want;
  lua_pushlstring(L, buf_data(s->rbuf), n);
  buf_consume(&s->rbuf, n);
}

/*
** Stack: socket, n.  Buffered bytes first, then one recv(2).  A new call
** tries recv even when the last read came back short: in a stream (an echo,
** a download) more bytes have usually come in meanwhile, and asking costs
** one call where waiting costs a turn of the loop and an epoll_wait.
** read() keeps trusting a short read: a request parser would only get
** EAGAIN for it.
*/
static int recv_k(lua_State *L, int status, lua_KContext ctx) {
  csock_socket *s = (csock_socket *)lua_touserdata(L, 1);
  size_t want = (size_t)ctx;
  int e = stream_resumed(L, status, s);
  if (e == 0) stream_check_not_busy(L, s);
  if (e == 0 && buf_len(s->rbuf) > 0) {
    push_buffered(L, s, want);
    return 1;
  }
  if (e == 0 && s->eof && s->type == SOCK_STREAM) {
    lua_pushliteral(L, "");
    return 1;
  }
  int eager = status == LUA_OK;
  double deadline = sock_op_deadline(L, s, status);
  while (e == 0) {
    if (!eager && !loop_ready(&s->watch, CSOCK_READ)) {
      e = loop_wait_shared(L, &s->watch, CSOCK_READ, deadline, ctx, recv_k);
      continue;
    }
    eager = 0;
    size_t room;
    char *p = buf_string_space(want, &room);
    size_t ask = want < room ? want : room;
    if (s->xport != NULL) {
      long r = s->xport->ops->recv(s, p, ask);
      if (r >= 0) {
        if (r == 0) s->eof = 1;
        buf_push_string(L, p, (size_t)r);
        return 1;
      }
      e = stream_xport_wait(L, s, r, deadline, ctx, recv_k);
      continue;
    }
    ssize_t r = recv(s->fd, p, ask, 0);
    if (r >= 0) {
      if (r == 0 && s->type == SOCK_STREAM) s->eof = 1;
      if ((size_t)r < ask && s->type == SOCK_STREAM) loop_drained(&s->watch);
      buf_push_string(L, p, (size_t)r);
      return 1;
    }
    e = stream_again_or_fail(L, s, CSOCK_READ, errno, deadline, ctx, recv_k);
  }
  return stream_error(L, s, e);
}

int io_recv(lua_State *L) {
  sock_note_read(sock_checkopen(L, 1));
  lua_Integer n = check_size(L, 2, 65536);
  lua_settop(L, 1);
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
  int e = stream_resumed(L, status, s);
  if (e == 0) stream_check_not_busy(L, s);
  if (e == 0 && buf_len(s->rbuf) > 0) { /* a stream's buffered bytes first, like recv */
    push_buffered(L, s, want);
    push_peer(L, s);
    return 2;
  }
  double deadline = sock_op_deadline(L, s, status);
  while (e == 0) {
    size_t room;
    char *p = buf_scratch(&room);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (s->xport != NULL) { /* plaintext from the connected peer */
      long x = s->xport->ops->recv(s, p, want < room ? want : room);
      if (x >= 0) {
        if (x == 0) s->eof = 1;
        lua_pushlstring(L, p, (size_t)x);
        push_peer(L, s);
        return 2;
      }
      e = stream_xport_wait(L, s, x, deadline, ctx, recvfrom_k);
      continue;
    }
    ssize_t r = recvfrom(s->fd, p, want < room ? want : room, 0, (struct sockaddr *)&ss, &len);
    if (r >= 0) {
      lua_pushlstring(L, p, (size_t)r);
      if (len == 0 || ss.ss_family == AF_UNSPEC) /* a stream, or an unnamed peer */
        push_peer(L, s);
      else
        addr_push_from_method(L, (struct sockaddr *)&ss, len);
      return 2;
    }
    e = stream_again_or_fail(L, s, CSOCK_READ, errno, deadline, ctx, recvfrom_k);
  }
  return stream_error(L, s, e);
}

int io_recvfrom(lua_State *L) {
  sock_checkopen(L, 1);
  lua_Integer n = check_size(L, 2, 65536);
  lua_settop(L, 1);
  return recvfrom_k(L, LUA_OK, (lua_KContext)(n > INT_MAX ? INT_MAX : n));
}

/* ---------------------------------------------------------------- write */

static int write_fail(lua_State *L, const csock_socket *s, int err, size_t sent) {
  stream_error(L, s, err);
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
  if (n == 1 || iov[0].iov_len >= room)
    return s->xport->ops->send(s, iov[0].iov_base, iov[0].iov_len);
  for (int i = 0; i < n && used < room; i++) {
    size_t k = iov[i].iov_len < room - used ? iov[i].iov_len : room - used;
    memcpy(block + used, iov[i].iov_base, k);
    used += k;
  }
  return s->xport->ops->send(s, block, used);
}

/* Stack: socket, strings.  ctx counts the bytes already sent. */
static int write_k(lua_State *L, int status, lua_KContext ctx) {
  csock_socket *s = (csock_socket *)lua_touserdata(L, 1);
  size_t sent = (size_t)ctx;
  int top = lua_gettop(L);
  double deadline = sock_op_deadline(L, s, status);
  int e = stream_resumed(L, status, s);
  while (e == 0) {
    struct iovec iov[IOV_BATCH];
    int n = 0, i = 2;
    size_t skip = sent;
    for (; i <= top && n < IOV_BATCH; i++) {
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
    if (!loop_ready(&s->watch, CSOCK_WRITE)) {
      e = loop_wait(L, &s->watch, CSOCK_WRITE, deadline, (lua_KContext)sent, write_k);
      continue;
    }
    ssize_t w;
    if (s->xport != NULL) {
      sock_before_send(s);
      long r = write_xport(s, iov, n);
      if (r >= 0) {
        sent += (size_t)r;
        continue;
      }
      e = stream_xport_wait(L, s, r, deadline, (lua_KContext)sent, write_k);
      continue;
    }
    int flags = sock_send_flags(L, s);
    if (n == 1) {
      w = send(s->fd, iov[0].iov_base, iov[0].iov_len, flags);
    } else {
      struct msghdr msg;
      memset(&msg, 0, sizeof msg);
      msg.msg_iov = iov;
      msg.msg_iovlen = (size_t)n;
      w = sendmsg(s->fd, &msg, flags);
    }
    if (w >= 0) {
      size_t asked = 0;
      for (int j = 0; j < n; j++) asked += iov[j].iov_len;
      if ((size_t)w == asked && i > top) { /* all of it went: no second pass over the pieces */
        lua_settop(L, 1);
        return 1;
      }
      if ((size_t)w < asked) loop_blocked(&s->watch, CSOCK_WRITE);
      sent += (size_t)w;
      continue;
    }
    e = stream_again_or_fail(L, s, CSOCK_WRITE, errno, deadline, (lua_KContext)sent, write_k);
  }
  return write_fail(L, s, e, sent);
}

/*
** write(str), the common case, tried with one send and no iovec: 1 when
** it all went, 0 to go on with write_k (*sent bytes went), or -errno.
*/
static int write_one(lua_State *L, csock_socket *s, size_t *sent) {
  size_t len;
  const char *p = lua_tolstring(L, 2, &len);
  if (len == 0 || s->xport != NULL || !loop_ready(&s->watch, CSOCK_WRITE)) return 0;
  ssize_t w = send(s->fd, p, len, sock_send_flags(L, s));
  if (w < 0) {
    if (errno == EAGAIN) loop_blocked(&s->watch, CSOCK_WRITE);
    return errno == EAGAIN || errno == EINTR ? 0 : -errno;
  }
  *sent = (size_t)w;
  if ((size_t)w < len) loop_blocked(&s->watch, CSOCK_WRITE);
  return (size_t)w == len;
}

/*
** Argument i of write as the string it sends.  Numbers are written as
** file:write writes them: a float with LUA_NUMBER_FMT ("%.14g", so 3.0 is
** "3"), not as tostring shows it ("3.0").
*/
static void write_arg_to_string(lua_State *L, int i) {
  int t = lua_type(L, i);
  if (t == LUA_TSTRING) return; /* the common case */
  if (t == LUA_TNUMBER && !lua_isinteger(L, i)) {
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
    if (r < 0) return write_fail(L, s, -r, 0);
    if (r > 0) {
      lua_settop(L, 1);
      return 1;
    }
  }
  for (int i = 2; i <= top; i++) write_arg_to_string(L, i);
  return write_k(L, LUA_OK, (lua_KContext)sent);
}

const luaL_Reg io_methods[] = {
    {"accept", io_accept}, {"connect", io_connect},     {"send", io_send},
    {"recv", io_recv},     {"sendto", io_sendto},       {"recvfrom", io_recvfrom},
    {"write", io_write},   {"_accept", io_accept_bare}, {NULL, NULL},
};
