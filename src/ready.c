/*
** ready.c - readiness without I/O: csock.ready(s, "r"|"w" [, timeout])
** waits until a call on s in that direction would not wait (a read, or an
** accept on a listener; a write), and csock.pending(s) counts the bytes
** already in s's read buffer.  They are what a select-style multiplexer
** needs (LuaSocket's select and dirty in lua/csock/socket.lua): a
** listener can only be waited on this way, since accepting to find out
** would take the connection.
*/
#include <errno.h>
#include <math.h>
#include <poll.h>

#include "csock.h"

/*
** 1 if s is ready for dir now, 0 if not, -errno if poll(2) fails.  Bytes in
** the read buffer and a seen end of stream make s readable without asking
** the kernel, as LuaSocket's dirty sockets are; an error or hang-up counts
** as ready, so the caller's next call sees it.
*/
static int ready_now(csock_socket *s, int dir) {
  if (dir == CSOCK_READ && (buf_len(s->rbuf) > 0 || s->eof)) return 1;
  struct pollfd p;
  p.fd = s->fd;
  p.events = dir == CSOCK_READ ? POLLIN : POLLOUT;
  p.revents = 0;
  int r;
  do {
    r = poll(&p, 1, 0);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return -errno;
  return r > 0;
}

/*
** The continuation of csock.ready, called directly and when the loop
** resumes the task: stack 1 the socket, 2 the direction, 3 the deadline
** (< 0: none).  The poll before each wait makes the wait safe on an
** edge-triggered poller: an edge that came while nobody waited is seen
** here, and anything that arrives later brings a new one.
*/
static int ready_k(lua_State *L, int status, lua_KContext ctx) {
  csock_socket *s = (csock_socket *)lua_touserdata(L, 1);
  int dir = (int)ctx;
  double deadline = lua_tonumber(L, 3);
  int e = status == LUA_YIELD ? loop_woken(L) : 0;
  while (e == 0) {
    if (s->fd < 0) {
      e = EBADF;
      break;
    }
    int r = ready_now(s, dir);
    if (r > 0) {
      lua_pushboolean(L, 1);
      return 1;
    }
    e = r < 0 ? r : loop_wait(L, &s->watch, dir, deadline, ctx, ready_k);
  }
  if (e < 0) e = -e;
  if (e == EBADF) return csock_failmsg(L, "socket closed", EBADF);
  return csock_failure(L, e);
}

/*
** csock.ready(s, dir [, timeout]): true once s is ready for dir ("r" or
** "w"); nil, "timeout", ETIMEDOUT after timeout seconds (0: look once,
** nil: no limit); nil, "socket closed", EBADF if another task closes s.
** It never reads or writes, so no byte is taken from anyone.
*/
int ready_wait(lua_State *L) {
  static const char *const dirs[] = {"r", "w", NULL};
  sock_checkopen(L, 1);
  int dir = csock_checkoption(L, 2, dirs) == 0 ? CSOCK_READ : CSOCK_WRITE;
  double deadline = -1;
  if (!lua_isnoneornil(L, 3)) {
    lua_Number t = csock_checknumber(L, 3);
    csock_checkduration(L, 3, t, "timeout");
    deadline = isinf(t) ? -1 : csock_now() + t;
  }
  lua_settop(L, 2);
  lua_pushnumber(L, deadline);
  return ready_k(L, LUA_OK, (lua_KContext)dir);
}

/* csock.pending(s): the bytes in s's read buffer, which a read returns
   without a system call (0 on a closed socket). */
int ready_pending(lua_State *L) {
  csock_socket *s = sock_check(L, 1);
  lua_pushinteger(L, s->fd < 0 ? 0 : (lua_Integer)buf_len(s->rbuf));
  return 1;
}
