/*
** opt.c - socket options, driven by one table of {level, name, kind}.
** csock passes no raw numbers through: an option it does not know is a
** programming error, reported before any system call.
*/
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "csock.h"

typedef enum { OPT_INT, OPT_BOOL, OPT_LINGER, OPT_TIMEVAL } opt_kind;
enum { OPT_RW = 0, OPT_RO = 1 };

typedef struct opt_entry {
  const char *name;
  int level, optname;
  opt_kind kind;
  int readonly;
} opt_entry;

#define O(level, name, kind, ro) \
  { #name, level, name, kind, ro }
static const opt_entry options[] = {
    O(SOL_SOCKET, SO_REUSEADDR, OPT_BOOL, OPT_RW),
    O(SOL_SOCKET, SO_REUSEPORT, OPT_BOOL, OPT_RW),
    O(SOL_SOCKET, SO_KEEPALIVE, OPT_BOOL, OPT_RW),
    O(SOL_SOCKET, SO_BROADCAST, OPT_BOOL, OPT_RW),
    O(SOL_SOCKET, SO_DONTROUTE, OPT_BOOL, OPT_RW),
    O(SOL_SOCKET, SO_OOBINLINE, OPT_BOOL, OPT_RW),
    O(SOL_SOCKET, SO_RCVBUF, OPT_INT, OPT_RW),
    O(SOL_SOCKET, SO_SNDBUF, OPT_INT, OPT_RW),
    O(SOL_SOCKET, SO_RCVLOWAT, OPT_INT, OPT_RW),
    O(SOL_SOCKET, SO_SNDLOWAT, OPT_INT, OPT_RW),
    O(SOL_SOCKET, SO_PRIORITY, OPT_INT, OPT_RW),
    O(SOL_SOCKET, SO_MARK, OPT_INT, OPT_RW),
    O(SOL_SOCKET, SO_LINGER, OPT_LINGER, OPT_RW),
    O(SOL_SOCKET, SO_RCVTIMEO, OPT_TIMEVAL, OPT_RW),
    O(SOL_SOCKET, SO_SNDTIMEO, OPT_TIMEVAL, OPT_RW),
    O(SOL_SOCKET, SO_ERROR, OPT_INT, OPT_RO),
    O(SOL_SOCKET, SO_TYPE, OPT_INT, OPT_RO),
    O(SOL_SOCKET, SO_DOMAIN, OPT_INT, OPT_RO),
    O(SOL_SOCKET, SO_PROTOCOL, OPT_INT, OPT_RO),
    O(SOL_SOCKET, SO_ACCEPTCONN, OPT_BOOL, OPT_RO),
    O(IPPROTO_TCP, TCP_NODELAY, OPT_BOOL, OPT_RW),
    O(IPPROTO_TCP, TCP_CORK, OPT_BOOL, OPT_RW),
    O(IPPROTO_TCP, TCP_QUICKACK, OPT_BOOL, OPT_RW),
    O(IPPROTO_TCP, TCP_KEEPIDLE, OPT_INT, OPT_RW),
    O(IPPROTO_TCP, TCP_KEEPINTVL, OPT_INT, OPT_RW),
    O(IPPROTO_TCP, TCP_KEEPCNT, OPT_INT, OPT_RW),
    O(IPPROTO_TCP, TCP_DEFER_ACCEPT, OPT_INT, OPT_RW),
    O(IPPROTO_TCP, TCP_FASTOPEN, OPT_INT, OPT_RW),
    O(IPPROTO_TCP, TCP_USER_TIMEOUT, OPT_INT, OPT_RW),
    O(IPPROTO_TCP, TCP_MAXSEG, OPT_INT, OPT_RW),
    O(IPPROTO_IP, IP_TTL, OPT_INT, OPT_RW),
    O(IPPROTO_IP, IP_TOS, OPT_INT, OPT_RW),
    O(IPPROTO_IP, IP_MULTICAST_TTL, OPT_INT, OPT_RW),
    O(IPPROTO_IP, IP_MULTICAST_LOOP, OPT_BOOL, OPT_RW),
    O(IPPROTO_IP, IP_FREEBIND, OPT_BOOL, OPT_RW),
    O(IPPROTO_IPV6, IPV6_V6ONLY, OPT_BOOL, OPT_RW),
    O(IPPROTO_IPV6, IPV6_UNICAST_HOPS, OPT_INT, OPT_RW),
    O(IPPROTO_IPV6, IPV6_MULTICAST_HOPS, OPT_INT, OPT_RW),
    O(IPPROTO_IPV6, IPV6_MULTICAST_LOOP, OPT_BOOL, OPT_RW),
    {NULL, 0, 0, OPT_INT, 0},
};
#undef O

static const struct {
  const char *name;
  int value;
} levels[] = {
    {"SOL_SOCKET", SOL_SOCKET}, {"IPPROTO_TCP", IPPROTO_TCP},   {"IPPROTO_UDP", IPPROTO_UDP},
    {"IPPROTO_IP", IPPROTO_IP}, {"IPPROTO_IPV6", IPPROTO_IPV6}, {NULL, 0},
};

void opt_push_constants(lua_State *L) {
  for (int i = 0; levels[i].name; i++) {
    lua_pushinteger(L, levels[i].value);
    lua_setfield(L, -2, levels[i].name);
  }
  for (const opt_entry *o = options; o->name; o++) {
    lua_pushinteger(L, o->optname);
    lua_setfield(L, -2, o->name);
  }
}

/* Finds the option named by arguments 2 (level) and 3 (name), or raises. */
static const opt_entry *opt_check(lua_State *L) {
  lua_Integer level = csock_checkinteger(L, 2);
  lua_Integer name = csock_checkinteger(L, 3);
  int level_known = 0;
  for (int i = 0; levels[i].name; i++)
    if (levels[i].value == level) level_known = 1;
  if (!level_known) csock_argerror(L, 2, "unknown option level");
  for (const opt_entry *o = options; o->name; o++)
    if (o->level == level && o->optname == name) return o;
  csock_argerror(L, 3, "unknown option");
  return NULL;
}

static int opt_checkint(lua_State *L, int idx) {
  if (lua_isboolean(L, idx)) return lua_toboolean(L, idx);
  lua_Integer v = csock_checkinteger(L, idx);
  csock_argcheck(L, v >= INT_MIN && v <= INT_MAX, idx, "value out of range");
  return (int)v;
}

static int opt_checkfield(lua_State *L, int idx, const char *field) {
  lua_getfield(L, idx, field);
  int v;
  if (lua_isboolean(L, -1))
    v = lua_toboolean(L, -1);
  else if (lua_isinteger(L, -1)) {
    lua_Integer i = lua_tointeger(L, -1);
    if (i < 0 || i > INT_MAX) csock_argerror(L, idx, "linger out of range");
    v = (int)i;
  } else if (lua_isnil(L, -1))
    v = 0;
  else
    return csock_argerror(L, idx,
                          lua_pushfstring(L, "field '%s' must be a boolean or an integer", field));
  lua_pop(L, 1);
  return v;
}

int opt_set(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  sock_nodelay_now(s); /* before, so that the caller's own choice wins */
  const opt_entry *o = opt_check(L);
  csock_argcheck(L, !o->readonly, 3, "option is read-only");
  csock_checkany(L, 4);
  int r;
  switch (o->kind) {
    case OPT_LINGER: {
      csock_checktype(L, 4, LUA_TTABLE);
      struct linger lg;
      lg.l_onoff = opt_checkfield(L, 4, "onoff") != 0;
      lg.l_linger = opt_checkfield(L, 4, "linger");
      r = setsockopt(s->fd, o->level, o->optname, &lg, sizeof lg);
      break;
    }
    case OPT_TIMEVAL: {
      lua_Number t = csock_checknumber(L, 4);
      csock_argcheck(L, t >= 0 && t < 1e9, 4, "value out of range");
      struct timeval tv;
      tv.tv_sec = (time_t)t;
      tv.tv_usec = (suseconds_t)((t - (lua_Number)tv.tv_sec) * 1e6);
      r = setsockopt(s->fd, o->level, o->optname, &tv, sizeof tv);
      break;
    }
    default: {
      int v = opt_checkint(L, 4);
      if (o->kind == OPT_BOOL) v = v != 0;
      r = setsockopt(s->fd, o->level, o->optname, &v, sizeof v);
      break;
    }
  }
  if (r < 0) return csock_failure(L, errno);
  lua_pushboolean(L, 1);
  return 1;
}

int opt_get(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  sock_nodelay_now(s);
  const opt_entry *o = opt_check(L);
  socklen_t len;
  switch (o->kind) {
    case OPT_LINGER: {
      struct linger lg = {0, 0};
      len = sizeof lg;
      if (getsockopt(s->fd, o->level, o->optname, &lg, &len) < 0) return csock_failure(L, errno);
      lua_createtable(L, 0, 2);
      lua_pushboolean(L, lg.l_onoff != 0);
      lua_setfield(L, -2, "onoff");
      lua_pushinteger(L, lg.l_linger);
      lua_setfield(L, -2, "linger");
      return 1;
    }
    case OPT_TIMEVAL: {
      struct timeval tv = {0, 0};
      len = sizeof tv;
      if (getsockopt(s->fd, o->level, o->optname, &tv, &len) < 0) return csock_failure(L, errno);
      lua_pushnumber(L, (lua_Number)tv.tv_sec + (lua_Number)tv.tv_usec * 1e-6);
      return 1;
    }
    default: {
      int v = 0;
      len = sizeof v;
      if (getsockopt(s->fd, o->level, o->optname, &v, &len) < 0) return csock_failure(L, errno);
      /* flag options come back as integers too, as SPEC says */
      lua_pushinteger(L, o->kind == OPT_BOOL ? (v != 0) : v);
      return 1;
    }
  }
}
