/*
** socket.c - the "csock.socket" userdata: creation, the methods that never
** wait (bind, listen, shutdown, names, timeouts) and the metatable.
** Shaped like liolib.c: the userdata is created closed before the
** descriptor exists, so a failure in between cannot leak the descriptor.
*/
#include <errno.h>
#include <netinet/in.h>
#include <math.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "csock.h"

/*
** Telling a socket from other userdata: luaL_checkudata looks the metatable
** up in the registry by name and compares, four API calls that made up a
** twentieth of the user time of a keep-alive request.  A socket instead
** carries, at its start, the address of a static of this file, and only a
** full userdata of exactly a socket's size is read there (lua_rawlen is 0
** for anything else), so the check is two calls and never reads outside
** the value it is given.
*/
static char socket_token; /* its address is the mark; never written */

csock_socket *sock_check(lua_State *L, int idx) {
  csock_socket *s = (csock_socket *)lua_touserdata(L, idx);
  if (s != NULL && lua_rawlen(L, idx) == sizeof *s && s->token == &socket_token) return s;
  csock_typeerror(L, idx, CSOCK_SOCKET);
  return NULL;
}

/* Checks that argument idx is a socket and still open (cqueues' checkvalid). */
csock_socket *sock_checkopen(lua_State *L, int idx) {
  csock_socket *s = sock_check(L, idx);
  csock_argcheck(L, s->fd >= 0, idx, "socket is closed");
  return s;
}

/* Pushes a new, closed socket without a metatable yet. */
static csock_socket *sock_alloc(lua_State *L, int family, int type) {
  csock_socket *s = (csock_socket *)lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  s->token = &socket_token;
  loop_watch_init(&s->watch);        /* closed: fd -1 */
  s->family = (unsigned char)family; /* AF_INET, AF_INET6 or AF_UNIX */
  s->type = (unsigned char)type;     /* SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET */
  s->timeout = -1;
  s->maxline = CSOCK_MAXLINE_DEFAULT;
  s->born = workers_forks();
  return s;
}

/* Pushes a new, closed socket with its metatable. */
csock_socket *sock_push(lua_State *L, int family, int type) {
  csock_socket *s = sock_alloc(L, family, type);
  luaL_setmetatable(L, CSOCK_SOCKET);
  return s;
}

/* sock_push for the methods, which hold the metatable as upvalue 1. */
csock_socket *sock_push_from_method(lua_State *L, int family, int type) {
  csock_socket *s = sock_alloc(L, family, type);
  lua_pushvalue(L, lua_upvalueindex(SOCK_UV_META));
  lua_setmetatable(L, -2);
  return s;
}

/*
** Accepted and connected TCP sockets have TCP_NODELAY on, but it is set just
** before their second send rather than at once: Nagle's algorithm holds a
** segment back only while an earlier small one is unacknowledged, so it
** cannot delay the first send on a connection.  A server that answers one
** request and closes (Connection: close) saves a system call per
** connection that way.  Socket options and fileno apply it first, so the
** socket always looks as it will behave.
*/
enum { NODELAY_DONE, NODELAY_BEFORE_FIRST_SEND, NODELAY_BEFORE_SECOND_SEND };

void sock_nodelay_later(csock_socket *s) {
  if (s->type == SOCK_STREAM && (s->family == AF_INET || s->family == AF_INET6))
    s->nodelay_due = NODELAY_BEFORE_FIRST_SEND;
}

void sock_nodelay_now(csock_socket *s) {
  if (s->nodelay_due == NODELAY_DONE || s->fd < 0) return;
  cork_set_nodelay(s); /* which also sends what is corked */
}

void sock_nodelay_step(csock_socket *s) {
  if (s->nodelay_due == NODELAY_BEFORE_FIRST_SEND)
    s->nodelay_due = NODELAY_BEFORE_SECOND_SEND;
  else
    sock_nodelay_now(s);
}

/* A descriptor another process may hold too: systemd's, or one made before a fork. */
static int sock_shared(const csock_socket *s) { return s->inherited || s->born != workers_forks(); }

/*
** sock_send_flags for a socket whose TCP_NODELAY is still due, that is one
** of its first two sends: corked (cork.c) when the task is expected to
** close the socket next, and then its later sends join the queued bytes.
*/
int sock_first_send_flags(lua_State *L, csock_socket *s) {
  if (s->corked) return MSG_NOSIGNAL | MSG_MORE;
  s->wrote = 1;
  if (cork_expected() && s->xport == NULL && !sock_shared(s) && loop_in_task(L)) {
    cork_add(s);
    return MSG_NOSIGNAL | MSG_MORE;
  }
  sock_nodelay_step(s);
  return MSG_NOSIGNAL;
}

/* Deadline of an operation that starts now: -1 when it may wait forever. */
double sock_deadline(const csock_socket *s) {
  return s->timeout < 0 ? -1 : csock_now() + s->timeout;
}

/*
** The deadline of the operation a method's continuation runs: on its first
** pass (status LUA_OK, called by the method) the operation starts now;
** resumed after a wait, it is the one that wait was given, which the loop
** keeps for the task (loop_op_deadline).
*/
double sock_op_deadline(lua_State *L, const csock_socket *s, int status) {
  return status == LUA_OK ? sock_deadline(s) : loop_op_deadline(L);
}

/*
** Closes s: the loop forgets it and wakes its waiters first (they will see
** the socket closed), then the descriptor goes.  Harmless when closed.
*/
int sock_close(lua_State *L, csock_socket *s) {
  if (s->fd < 0) return 0;
  if (s->rbusy) loop_read_abandon(L, s); /* a read under way fails at its next step (fd < 0) */
  if (s->wrote || s->corked) cork_closing(s, sock_shared(s));
  loop_forget(&s->watch, sock_shared(s));
  if (s->xport != NULL) s->xport->ops->close(s); /* a close_notify needs the descriptor */
  int fd = s->fd;
  s->fd = -1;
  buf_free(&s->rbuf);
  /* Linux closes the descriptor even when close(2) fails with EINTR */
  return close(fd) == 0 || errno == EINTR ? 0 : -errno;
}

static int type_of(lua_State *L, int idx, int dflt) {
  if (lua_isnoneornil(L, idx)) return dflt;
  if (lua_type(L, idx) == LUA_TSTRING) {
    static const char *const names[] = {"stream", "dgram", "seqpacket", NULL};
    static const int values[] = {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET};
    return values[csock_checkoption(L, idx, names)];
  }
  lua_Integer t = csock_checkinteger(L, idx);
  if (t != SOCK_STREAM && t != SOCK_DGRAM && t != SOCK_SEQPACKET)
    csock_argerror(L, idx, "unsupported socket type");
  return (int)t;
}

/* csock.socket(domain, type [, protocol]) */
int sock_new(lua_State *L) {
  int family = addr_parse_family(L, 1);
  int type = type_of(L, 2, -1);
  if (type < 0) csock_argerror(L, 2, "socket type expected");
  lua_Integer proto = csock_optinteger(L, 3, 0);
  csock_argcheck(L, proto >= 0 && proto <= 255, 3, "protocol out of range");
  csock_socket *s = sock_push(L, family, type);
  s->fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, (int)proto);
  if (s->fd < 0) return csock_failure(L, errno);
  return 1;
}

/* csock.socketpair([domain [, type]]) */
int sock_pair(lua_State *L) {
  int family = lua_isnoneornil(L, 1) ? AF_UNIX : addr_parse_family(L, 1);
  int type = type_of(L, 2, SOCK_STREAM);
  csock_socket *a = sock_push(L, family, type);
  csock_socket *b = sock_push(L, family, type);
  int fds[2];
  if (socketpair(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0)
    return csock_failure(L, errno);
  a->fd = fds[0];
  b->fd = fds[1];
  return 2;
}

static int sock_bind(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  struct sockaddr_storage ss;
  socklen_t len;
  int r = addr_from_args(L, 2, s->family, s->type, &ss, &len);
  if (r == ADDR_LOOKUP) return resolve_then(L, 2, s->family, s->type, sock_deadline(s), sock_bind);
  if (r != 0) return addr_pusherror(L, r);
  if (workers_current_id() > 0 && s->family != AF_UNIX) { /* workers share ports */
    int one = 1;
    setsockopt(s->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  }
  if (bind(s->fd, (struct sockaddr *)&ss, len) < 0) return csock_failure(L, errno);
  lua_pushboolean(L, 1);
  return 1;
}

static int sock_listen(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  lua_Integer backlog = csock_optinteger(L, 2, SOMAXCONN);
  csock_argcheck(L, backlog >= 0 && backlog <= 65535, 2, "backlog out of range");
  if (listen(s->fd, (int)backlog) < 0) return csock_failure(L, errno);
  s->listening = 1;
  lua_pushboolean(L, 1);
  return 1;
}

static int sock_shutdown(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  int how = SHUT_RDWR;
  if (lua_type(L, 2) == LUA_TSTRING) {
    static const char *const names[] = {"r", "w", "rw", NULL};
    static const int values[] = {SHUT_RD, SHUT_WR, SHUT_RDWR};
    how = values[csock_checkoption(L, 2, names)];
  } else if (!lua_isnoneornil(L, 2)) {
    lua_Integer h = csock_checkinteger(L, 2);
    csock_argcheck(L, h == SHUT_RD || h == SHUT_WR || h == SHUT_RDWR, 2, "invalid shutdown mode");
    how = (int)h;
  }
  if (how != SHUT_RD && s->xport != NULL) { /* the peer reads close_notify, then the FIN */
    int r = s->xport->ops->shutdown(s);
    if (r < 0) return csock_failure(L, r);
  }
  if (shutdown(s->fd, how) < 0) return csock_failure(L, errno);
  if (how != SHUT_RD && s->corked) cork_forget(s); /* the FIN took the queued bytes along */
  lua_pushboolean(L, 1);
  return 1;
}

static int sock_close_m(lua_State *L) {
  csock_socket *s = sock_check(L, 1);
  int r = sock_close(L, s);
  if (r < 0) return csock_failure(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

static int sock_gc(lua_State *L) {
  csock_socket *s = sock_check(L, 1);
  sock_close(L, s);
  return 0;
}

static int sock_name(lua_State *L, int peer) {
  csock_socket *s = sock_checkopen(L, 1);
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  memset(&ss, 0, sizeof ss);
  int r = peer ? getpeername(s->fd, (struct sockaddr *)&ss, &len)
               : getsockname(s->fd, (struct sockaddr *)&ss, &len);
  if (r < 0) return csock_failure(L, errno);
  addr_push(L, (struct sockaddr *)&ss, len);
  return 1;
}

static int sock_getsockname(lua_State *L) { return sock_name(L, 0); }
static int sock_getpeername(lua_State *L) { return sock_name(L, 1); }

static int sock_settimeout(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  if (lua_isnoneornil(L, 2)) {
    s->timeout = -1;
  } else {
    lua_Number t = csock_checknumber(L, 2);
    csock_checkduration(L, 2, t, "timeout");
    s->timeout = isinf(t) ? -1 : t;
  }
  lua_settop(L, 1);
  return 1;
}

static int sock_gettimeout(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  if (s->timeout < 0)
    lua_pushnil(L);
  else
    lua_pushnumber(L, s->timeout);
  return 1;
}

static int sock_setmaxline(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  lua_Integer n = csock_checkinteger(L, 2);
  csock_argcheck(L, n > 0 && n <= (lua_Integer)1 << 40, 2, "line length out of range");
  s->maxline = (size_t)n;
  lua_settop(L, 1);
  return 1;
}

static int sock_fileno(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  sock_nodelay_now(s); /* whoever uses the descriptor sees the socket's settings */
  lua_pushinteger(L, s->fd);
  return 1;
}

static const char *sock_kind(const csock_socket *s) {
  int stream = s->type == SOCK_STREAM, dgram = s->type == SOCK_DGRAM;
  switch (s->family) {
    case AF_INET: return stream ? "tcp" : dgram ? "udp" : "inet";
    case AF_INET6: return stream ? "tcp6" : dgram ? "udp6" : "inet6";
    default: return stream ? "unix" : dgram ? "unix-dgram" : "unix-seqpacket";
  }
}

static int sock_tostring(lua_State *L) {
  csock_socket *s = sock_check(L, 1);
  if (s->fd < 0)
    lua_pushliteral(L, "csock socket (closed)");
  else
    lua_pushfstring(L, "csock socket (%s, fd %d)", sock_kind(s), s->fd);
  return 1;
}

static const luaL_Reg meth[] = {
    {"bind", sock_bind},
    {"listen", sock_listen},
    {"shutdown", sock_shutdown},
    {"close", sock_close_m},
    {"getsockname", sock_getsockname},
    {"getpeername", sock_getpeername},
    {"settimeout", sock_settimeout},
    {"gettimeout", sock_gettimeout},
    {"setmaxline", sock_setmaxline},
    {"fileno", sock_fileno},
    {NULL, NULL},
};

static const luaL_Reg metameth[] = {
    {"__index", NULL}, /* placeholder */
    {"__gc", sock_gc}, {"__close", sock_gc}, {"__tostring", sock_tostring}, {NULL, NULL},
};

/*
** The metatable, with itself as the first upvalue of every method
** (sock_push_from_method) and the address tables' field names as the
** others (addr_push_from_method).  The methods of other files (io.c, opt.c) are
** added by the module entry with sock_add_methods, so that those files can
** call this one without this one calling them.
*/

/* Pushes the SOCK_NUPVALUES upvalues of the methods, with the metatable at idx. */
static void push_method_upvalues(lua_State *L, int idx) {
  lua_pushvalue(L, idx);
  lua_pushliteral(L, "family");
  lua_pushliteral(L, "addr");
  lua_pushliteral(L, "port");
  lua_pushliteral(L, "path");
  lua_pushinteger(L, -1); /* no IPv4 address yet */
  lua_pushnil(L);
}

void sock_open_meta(lua_State *L) {
  luaL_newmetatable(L, CSOCK_SOCKET);
  push_method_upvalues(L, -1);
  luaL_setfuncs(L, metameth, SOCK_NUPVALUES);
  luaL_newlibtable(L, meth);
  push_method_upvalues(L, -2);
  luaL_setfuncs(L, meth, SOCK_NUPVALUES);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

void sock_add_methods(lua_State *L, const luaL_Reg *methods) {
  luaL_getmetatable(L, CSOCK_SOCKET);
  lua_getfield(L, -1, "__index");
  push_method_upvalues(L, -2);
  luaL_setfuncs(L, methods, SOCK_NUPVALUES);
  lua_pop(L, 2);
}
