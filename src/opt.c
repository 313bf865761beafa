/*
** opt.c - socket options, driven by one table of {level, name, kind}.
** csock passes no raw numbers through: an option it does not know is a
** programming error, reported before any system call.
*/
#include <errno.h>
#include <arpa/inet.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <string.h>
#include <sys/time.h>

#include "csock.h"

/*
** OPT_MREQ, OPT_MREQ6: a multicast group to join or leave, as the table
** {multiaddr = group, interface = ...} (LuaSocket's shape); OPT_INADDR: an
** IPv4 address given and read as text.
*/
typedef enum {
  OPT_INT,
  OPT_BOOL,
  OPT_LINGER,
  OPT_TIMEVAL,
  OPT_MREQ,
  OPT_MREQ6,
  OPT_INADDR,
  OPT_UCRED /* SO_PEERCRED: {pid =, uid =, gid =} of a unix socket's peer */
} opt_kind;
typedef enum { OPT_RW, OPT_RO, OPT_WO } opt_access;

typedef struct opt_entry {
  const char *name;
  int level, optname;
  opt_kind kind;
  opt_access access;
} opt_entry;

#define O(level, name, kind, access) \
  { #name, level, name, kind, access }
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
    O(SOL_SOCKET, SO_PEERCRED, OPT_UCRED, OPT_RO),
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
    O(IPPROTO_IP, IP_MULTICAST_IF, OPT_INADDR, OPT_RW),
    O(IPPROTO_IP, IP_ADD_MEMBERSHIP, OPT_MREQ, OPT_WO),
    O(IPPROTO_IP, IP_DROP_MEMBERSHIP, OPT_MREQ, OPT_WO),
    O(IPPROTO_IPV6, IPV6_V6ONLY, OPT_BOOL, OPT_RW),
    O(IPPROTO_IPV6, IPV6_UNICAST_HOPS, OPT_INT, OPT_RW),
    O(IPPROTO_IPV6, IPV6_MULTICAST_HOPS, OPT_INT, OPT_RW),
    O(IPPROTO_IPV6, IPV6_MULTICAST_LOOP, OPT_BOOL, OPT_RW),
    O(IPPROTO_IPV6, IPV6_MULTICAST_IF, OPT_INT, OPT_RW),
    O(IPPROTO_IPV6, IPV6_JOIN_GROUP, OPT_MREQ6, OPT_WO),
    O(IPPROTO_IPV6, IPV6_LEAVE_GROUP, OPT_MREQ6, OPT_WO),
    {NULL, 0, 0, OPT_INT, OPT_RW},
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

/* An IPv4 address in text at the top of the stack ("*" or nil: any), popped, into *a. */
static void opt_pop_inaddr(lua_State *L, int idx, const char *what, struct in_addr *a) {
  int type = lua_type(L, -1);
  if (type != LUA_TSTRING && type != LUA_TNIL)
    csock_argerror(L, idx, lua_pushfstring(L, "%s must be an IPv4 address", what));
  const char *text = type == LUA_TNIL ? "*" : lua_tostring(L, -1);
  if (strcmp(text, "*") == 0)
    a->s_addr = htonl(INADDR_ANY);
  else if (inet_pton(AF_INET, text, a) != 1)
    csock_argerror(L, idx, lua_pushfstring(L, "%s is not an IPv4 address: '%s'", what, text));
  lua_pop(L, 1);
}

/* {multiaddr = "239.1.2.3", interface = "192.0.2.1" or "*"/nil} */
static void opt_check_mreq(lua_State *L, int idx, struct ip_mreq *mr) {
  csock_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, "multiaddr");
  csock_argcheck(L, !lua_isnil(L, -1), idx, "field 'multiaddr' missing");
  opt_pop_inaddr(L, idx, "multiaddr", &mr->imr_multiaddr);
  lua_getfield(L, idx, "interface");
  opt_pop_inaddr(L, idx, "interface", &mr->imr_interface);
}

/* {multiaddr = "ff02::1:3", interface = index or name ("lo"), nil: the kernel's choice} */
static void opt_check_mreq6(lua_State *L, int idx, struct ipv6_mreq *mr) {
  csock_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, "multiaddr");
  const char *group = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  if (group == NULL || inet_pton(AF_INET6, group, &mr->ipv6mr_multiaddr) != 1)
    csock_argerror(L, idx, "field 'multiaddr' must be an IPv6 address");
  lua_pop(L, 1);
  lua_getfield(L, idx, "interface");
  mr->ipv6mr_interface = 0;
  if (lua_isinteger(L, -1)) {
    lua_Integer i = lua_tointeger(L, -1);
    csock_argcheck(L, i >= 0 && i <= INT_MAX, idx, "interface index out of range");
    mr->ipv6mr_interface = (unsigned)i;
  } else if (lua_type(L, -1) == LUA_TSTRING) {
    mr->ipv6mr_interface = if_nametoindex(lua_tostring(L, -1));
    if (mr->ipv6mr_interface == 0)
      csock_argerror(L, idx, lua_pushfstring(L, "no interface '%s'", lua_tostring(L, -1)));
  } else if (!lua_isnil(L, -1)) {
    csock_argerror(L, idx, "field 'interface' must be an index or a name");
  }
  lua_pop(L, 1);
}

/* The option's value from argument 4, set on s; the setsockopt result. */
static int opt_set_value(lua_State *L, const csock_socket *s, const opt_entry *o) {
  switch (o->kind) {
    case OPT_LINGER: {
      csock_checktype(L, 4, LUA_TTABLE);
      struct linger lg;
      lg.l_onoff = opt_checkfield(L, 4, "onoff") != 0;
      lg.l_linger = opt_checkfield(L, 4, "linger");
      return setsockopt(s->fd, o->level, o->optname, &lg, sizeof lg);
    }
    case OPT_TIMEVAL: {
      lua_Number t = csock_checknumber(L, 4);
      csock_argcheck(L, t >= 0 && t < 1e9, 4, "value out of range");
      struct timeval tv;
      tv.tv_sec = (time_t)t;
      tv.tv_usec = (suseconds_t)((t - (lua_Number)tv.tv_sec) * 1e6);
      return setsockopt(s->fd, o->level, o->optname, &tv, sizeof tv);
    }
    case OPT_MREQ: {
      struct ip_mreq mr;
      opt_check_mreq(L, 4, &mr);
      return setsockopt(s->fd, o->level, o->optname, &mr, sizeof mr);
    }
    case OPT_MREQ6: {
      struct ipv6_mreq mr;
      opt_check_mreq6(L, 4, &mr);
      return setsockopt(s->fd, o->level, o->optname, &mr, sizeof mr);
    }
    case OPT_INADDR: {
      struct in_addr a;
      lua_pushvalue(L, 4);
      opt_pop_inaddr(L, 4, "value", &a);
      return setsockopt(s->fd, o->level, o->optname, &a, sizeof a);
    }
    default: {
      int v = opt_checkint(L, 4);
      if (o->kind == OPT_BOOL) v = v != 0;
      return setsockopt(s->fd, o->level, o->optname, &v, sizeof v);
    }
  }
}

int opt_set(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  sock_nodelay_now(s); /* before, so that the caller's own choice wins */
  const opt_entry *o = opt_check(L);
  csock_argcheck(L, o->access != OPT_RO, 3, "option is read-only");
  csock_checkany(L, 4);
  int r = opt_set_value(L, s, o);
  if (r < 0) return csock_failure(L, errno);
  lua_pushboolean(L, 1);
  return 1;
}

int opt_get(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  sock_nodelay_now(s);
  const opt_entry *o = opt_check(L);
  csock_argcheck(L, o->access != OPT_WO, 3, "option is write-only");
  socklen_t len;
  switch (o->kind) {
    case OPT_UCRED: {
      struct ucred cred = {0, 0, 0};
      len = sizeof cred;
      if (getsockopt(s->fd, o->level, o->optname, &cred, &len) < 0) return csock_failure(L, errno);
      lua_createtable(L, 0, 3);
      lua_pushinteger(L, cred.pid);
      lua_setfield(L, -2, "pid");
      lua_pushinteger(L, cred.uid);
      lua_setfield(L, -2, "uid");
      lua_pushinteger(L, cred.gid);
      lua_setfield(L, -2, "gid");
      return 1;
    }
    case OPT_INADDR: {
      struct in_addr a = {0};
      char text[INET_ADDRSTRLEN];
      len = sizeof a;
      if (getsockopt(s->fd, o->level, o->optname, &a, &len) < 0) return csock_failure(L, errno);
      lua_pushstring(L, inet_ntop(AF_INET, &a, text, sizeof text));
      return 1;
    }
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

const luaL_Reg opt_methods[] = {
    {"setsockopt", opt_set},
    {"getsockopt", opt_get},
    {NULL, NULL},
};
