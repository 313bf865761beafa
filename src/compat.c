/*
** compat.c - LuaSocket's receive and send as internal socket methods
** (_lsrecv, _lssend) for csock.socket (lua/csock/socket.lua), whose hot
** loop they are: redis-lua pays one send and two receives per command.
**
** Each does in one C call what the Lua layer did with read/recv/write and
** string work: LuaSocket's patterns ("*l" drops every CR, a count includes
** the prefix, "*a" reads to the end), its partial results on a failure
** (the bytes read so far, taken from the buffer) and send's indexes.  The
** results are raw -- csock's error message and errno -- and socket.lua
** turns them into LuaSocket's strings and keeps getstats' counters:
**
**   _lsrecv(pattern, prefix)  data, consumed
**                             | nil, msg, errno|nil, partial, consumed
**   _lssend(data, i, j)       last, sent | nil, msg, errno, last, sent
**   _lsfd()                   the descriptor, as a key of socket.lua's own
**                             table: unlike fileno, it hands the descriptor
**                             to no one, so TCP_NODELAY stays due and the
**                             socket's first reply may still wait for its
**                             close (cork.c)
**
** consumed and sent are the bytes taken from or given to the stream.  An
** argument outside the common shapes (a pattern or prefix that needs
** converting, a float index, a large count) gets false: socket.lua then
** checks it and takes its general path; a closed socket raises, as read
** and write do.  Reads follow read.c's cursor rule:
** the bytes stay in the buffer until the call ends.
*/
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "csock.h"

#define COUNT_MAX (16 * 1024) /* larger counts go through read, which reads them directly */

enum { MODE_LINE, MODE_COUNT, MODE_ALL };
#define CTX(mode, count) ((lua_KContext)(mode) | ((lua_KContext)(count) << 2))
#define CTX_MODE(ctx) ((int)((ctx)&3))
#define CTX_COUNT(ctx) ((size_t)((ctx) >> 2))

static int unhandled(lua_State *L) {
  lua_pushboolean(L, 0);
  return 1;
}

static size_t count_cr(const char *p, size_t len) {
  size_t n = 0;
  for (const char *cr = memchr(p, '\r', len); cr != NULL;
       cr = memchr(cr + 1, '\r', len - (size_t)(cr + 1 - p)))
    n++;
  return n;
}

/*
** Pushes the prefix (at index 3: a string, or nil for none) followed by len
** unread bytes of s, without their CRs when strip is set.  The string is
** made in one allocation after which no byte of s is read: a finalizer that
** allocation runs may close s and free its buffer.  0, or -EBADF when that
** happened (nothing pushed).
*/
static int push_joined(lua_State *L, csock_socket *s, size_t len, int strip) {
  size_t plen;
  const char *prefix = lua_tolstring(L, 3, &plen); /* nil: NULL and 0 */
  const char *data = buf_data(s->rbuf);
  size_t crs = strip && len > 0 ? count_cr(data, len) : 0;
  /* The common lines need no buffer: no CR, or a CRLF line's one CR, its last byte. */
  int cr_last_only = crs == 1 && data[len - 1] == '\r';
  if (plen == 0 && (crs == 0 || cr_last_only)) {
    lua_pushlstring(L, data, len - crs); /* copies before it may collect */
    return 0;
  }
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, plen + len - crs);
  if (len > 0 && s->fd < 0) {
    lua_pop(L, 1);
    return -EBADF;
  }
  data = buf_data(s->rbuf);
  if (plen > 0) memcpy(out, prefix, plen);
  size_t n = plen;
  for (size_t i = 0; i < len; i++)
    if (!crs || data[i] != '\r') out[n++] = data[i];
  luaL_pushresultsize(&b, n);
  return 0;
}

/* Pushes the prefix as a string: "" for none. */
static void push_prefix(lua_State *L) {
  if (lua_isnil(L, 3))
    lua_pushliteral(L, "");
  else
    lua_pushvalue(L, 3);
}

/* The read ends: the first consumed bytes leave the buffer and s is free again. */
static void recv_end(lua_State *L, csock_socket *s, size_t consumed) {
  if (s->fd >= 0) buf_consume(&s->rbuf, consumed);
  buf_set_scanned(s->rbuf, 0);
  loop_read_end(L, s);
}

/* data, consumed: a read that succeeded. */
static int recv_done(lua_State *L, csock_socket *s, size_t len, size_t consumed, int strip) {
  if (push_joined(L, s, len, strip) < 0) return -EBADF;
  recv_end(L, s, consumed);
  lua_pushinteger(L, (lua_Integer)consumed);
  return 2;
}

/*
** nil, msg, errno, partial, consumed: a read that failed with e (0: the
** stream ended).  Whatever the buffer holds is the partial result.
*/
static int recv_fail(lua_State *L, csock_socket *s, int e, int strip) {
  size_t len = s->fd < 0 ? 0 : buf_len(s->rbuf);
  lua_settop(L, 3);
  if (e == 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    lua_pushnil(L);
  } else {
    stream_error(L, s, e);
  }
  if (push_joined(L, s, len, strip) < 0) {
    len = 0;
    push_prefix(L);
  }
  recv_end(L, s, len);
  lua_pushinteger(L, (lua_Integer)len);
  return 5;
}

enum { TRY_NEED = 1 };

/*
** One look at the buffer for the read's pattern: the results pushed
** (their count), TRY_NEED for more bytes, or -EBADF (see push_joined).
** A line ends at "\n" and loses its CRs; at the end of the stream what
** there is comes back as a partial result with "closed", as in LuaSocket.
*/
static int recv_try(lua_State *L, csock_socket *s, lua_KContext ctx) {
  size_t len = buf_len(s->rbuf);
  const char *data = buf_data(s->rbuf);
  switch (CTX_MODE(ctx)) {
    case MODE_LINE: {
      size_t from = buf_scanned(s->rbuf);
      const char *nl = len > from ? memchr(data + from, '\n', len - from) : NULL;
      if (nl != NULL) return recv_done(L, s, (size_t)(nl - data), (size_t)(nl - data) + 1, 1);
      buf_set_scanned(s->rbuf, len);
      break;
    }
    case MODE_COUNT:
      if (len >= CTX_COUNT(ctx)) return recv_done(L, s, CTX_COUNT(ctx), CTX_COUNT(ctx), 0);
      break;
    default:
      if (s->eof && len > 0) return recv_done(L, s, len, len, 0);
  }
  return s->eof ? recv_fail(L, s, 0, CTX_MODE(ctx) == MODE_LINE) : TRY_NEED;
}

/* How much room the next fill should make: what a count lacks, else what came so far. */
static size_t recv_hint(const csock_socket *s, lua_KContext ctx) {
  size_t len = buf_len(s->rbuf);
  if (CTX_MODE(ctx) != MODE_COUNT) return len;
  return CTX_COUNT(ctx) > len ? CTX_COUNT(ctx) - len : 0;
}

/* Stack: socket, pattern, prefix (or nil).  Fills and waits until recv_try has an answer. */
static int recv_k(lua_State *L, int status, lua_KContext ctx) {
  csock_socket *s = (csock_socket *)lua_touserdata(L, 1);
  double deadline = sock_op_deadline(L, s, status);
  int e = stream_resumed(L, status, s);
  while (e == 0) {
    int r = recv_try(L, s, ctx);
    if (r != TRY_NEED) {
      if (r > 0) return r;
      e = r;
      break;
    }
    e = stream_fill_or_wait(L, s, recv_hint(s, ctx), deadline, ctx, recv_k);
  }
  return recv_fail(L, s, e, CTX_MODE(ctx) == MODE_LINE);
}

/* The read a pattern asks for, as a context; -1 when socket.lua must look at it. */
static lua_Integer recv_mode(lua_State *L) {
  if (lua_isnoneornil(L, 2)) return CTX(MODE_LINE, 0);
  if (lua_type(L, 2) == LUA_TSTRING) {
    const char *p = lua_tostring(L, 2);
    if (*p == '*') p++;
    if (p[0] == 'l' && p[1] == '\0') return CTX(MODE_LINE, 0);
    if (p[0] == 'a' && p[1] == '\0') return CTX(MODE_ALL, 0);
    return -1;
  }
  int isint;
  lua_Integer n = lua_tointegerx(L, 2, &isint);
  if (lua_type(L, 2) != LUA_TNUMBER || !isint || n < 0 || n > COUNT_MAX) return -1;
  size_t plen = lua_rawlen(L, 3);
  return CTX(MODE_COUNT, (size_t)n > plen ? (size_t)n - plen : 0);
}

/* sock:_lsrecv(pattern, prefix) */
static int compat_recv(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  lua_settop(L, 3);
  if (s->type != SOCK_STREAM) return unhandled(L);
  int ptype = lua_type(L, 3); /* nil (no prefix) stays nil: no "" to make per call */
  if (ptype != LUA_TNIL && ptype != LUA_TSTRING) return unhandled(L);
  lua_Integer ctx = recv_mode(L);
  if (ctx < 0) return unhandled(L);
  if (CTX_MODE(ctx) == MODE_COUNT && CTX_COUNT(ctx) == 0) { /* the prefix is all of it */
    push_prefix(L);
    lua_pushinteger(L, 0);
    return 2;
  }
  stream_check_not_busy(L, s);
  sock_note_read(s);
  buf_set_scanned(s->rbuf, 0);
  loop_read_begin(L, s);
  return recv_k(L, LUA_OK, (lua_KContext)ctx);
}

/* ---------------------------------------------------------------- send */

/* Stack: socket, data, first, last (1-based, within data).  ctx counts the bytes sent. */
static int send_k(lua_State *L, int status, lua_KContext ctx) {
  csock_socket *s = (csock_socket *)lua_touserdata(L, 1);
  const char *data = lua_tostring(L, 2);
  lua_Integer i = lua_tointeger(L, 3), j = lua_tointeger(L, 4);
  size_t sent = (size_t)ctx, want = (size_t)(j - i + 1);
  double deadline = sock_op_deadline(L, s, status);
  int e = stream_resumed(L, status, s);
  while (e == 0) {
    const char *p = data + (i - 1) + sent;
    size_t left = want - sent;
    if (left == 0) {
      lua_pushinteger(L, j);
      lua_pushinteger(L, (lua_Integer)sent);
      return 2;
    }
    if (!loop_ready(&s->watch, CSOCK_WRITE)) {
      e = loop_wait(L, &s->watch, CSOCK_WRITE, deadline, (lua_KContext)sent, send_k);
      continue;
    }
    if (s->xport != NULL) {
      sock_before_send(s);
      long r = s->xport->ops->send(s, p, left);
      if (r >= 0)
        sent += (size_t)r;
      else
        e = stream_xport_wait(L, s, r, deadline, (lua_KContext)sent, send_k);
      continue;
    }
    ssize_t w = send(s->fd, p, left, sock_send_flags(L, s));
    if (w >= 0) {
      if ((size_t)w < left) loop_blocked(&s->watch, CSOCK_WRITE);
      sent += (size_t)w;
      continue;
    }
    e = stream_again_or_fail(L, s, CSOCK_WRITE, errno, deadline, (lua_KContext)sent, send_k);
  }
  stream_error(L, s, e);
  lua_pushinteger(L, i - 1 + (lua_Integer)sent);
  lua_pushinteger(L, (lua_Integer)sent);
  return 5;
}

/* An optional integer index at idx (def when nil); 0 when socket.lua must look at it. */
static int send_index(lua_State *L, int idx, lua_Integer def, lua_Integer *v) {
  int isint = 1;
  if (lua_isnil(L, idx))
    *v = def;
  else if (lua_type(L, idx) == LUA_TNUMBER)
    *v = lua_tointegerx(L, idx, &isint);
  else
    return 0;
  return isint;
}

/* sock:_lssend(data, i, j): LuaSocket's indexes, negative from the end, clipped to data. */
static int compat_send(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  lua_Integer i, j;
  lua_settop(L, 4);
  if (s->type != SOCK_STREAM || lua_type(L, 2) != LUA_TSTRING || !send_index(L, 3, 1, &i) ||
      !send_index(L, 4, -1, &j))
    return unhandled(L);
  lua_Integer size = (lua_Integer)lua_rawlen(L, 2);
  if (i < 0) i = size + i + 1;
  if (j < 0) j = size + j + 1;
  if (i < 1) i = 1;
  if (j > size) j = size;
  if (i > j) {
    lua_pushinteger(L, i - 1);
    lua_pushinteger(L, 0);
    return 2;
  }
  lua_pushinteger(L, i);
  lua_replace(L, 3);
  lua_pushinteger(L, j);
  lua_replace(L, 4);
  return send_k(L, LUA_OK, 0);
}

/* sock:_lsfd() */
static int compat_fd(lua_State *L) {
  lua_pushinteger(L, sock_checkopen(L, 1)->fd);
  return 1;
}

const luaL_Reg compat_methods[] = {
    {"_lsrecv", compat_recv},
    {"_lssend", compat_send},
    {"_lsfd", compat_fd},
    {NULL, NULL},
};
