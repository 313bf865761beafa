/*
** csock.c - the module entry: luaopen_csock_core, the module table, the
** functions that belong to no object, and the constants.  The top of the
** house: it calls into every other file and no file calls it.
*/
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "csock.h"

static int mod_now(lua_State *L) {
  lua_pushnumber(L, csock_now());
  return 1;
}

/* The time of day in seconds since the epoch, with a fraction: what
   LuaSocket's gettime gives (csock.now is monotonic, for intervals). */
static int mod_time(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

typedef struct named_int {
  const char *name;
  int value;
} named_int;

#define C(x) \
  { #x, x }
/* clang-format off */
static const named_int constants[] = {
    C(AF_INET), C(AF_INET6), C(AF_UNIX), C(AF_LOCAL), C(AF_UNSPEC),
    C(SOCK_STREAM), C(SOCK_DGRAM), C(SOCK_SEQPACKET), C(SOCK_RAW),
    C(SHUT_RD), C(SHUT_WR), C(SHUT_RDWR),
    C(AI_PASSIVE), C(AI_CANONNAME), C(AI_NUMERICHOST), C(AI_NUMERICSERV),
    C(AI_ADDRCONFIG), C(AI_V4MAPPED), C(AI_ALL),
    C(EAI_AGAIN), C(EAI_BADFLAGS), C(EAI_FAIL), C(EAI_FAMILY),
    C(EAI_MEMORY), C(EAI_NONAME), C(EAI_SERVICE), C(EAI_SOCKTYPE),
    C(EAI_SYSTEM),
    C(EPERM), C(ENOENT), C(EINTR), C(EIO), C(EBADF), C(EAGAIN),
    C(EWOULDBLOCK), C(ENOMEM), C(EACCES), C(EFAULT), C(EBUSY), C(EEXIST),
    C(EINVAL), C(ENFILE), C(EMFILE), C(ENOSPC), C(EPIPE), C(ENOTSOCK),
    C(EDESTADDRREQ), C(EMSGSIZE), C(EPROTOTYPE), C(ENOPROTOOPT),
    C(EPROTONOSUPPORT), C(EOPNOTSUPP), C(EAFNOSUPPORT), C(EADDRINUSE),
    C(EADDRNOTAVAIL), C(ENETDOWN), C(ENETUNREACH), C(ECONNABORTED),
    C(ECONNRESET), C(ENOBUFS), C(EISCONN), C(ENOTCONN), C(ETIMEDOUT),
    C(ECONNREFUSED), C(EHOSTDOWN), C(EHOSTUNREACH), C(EALREADY),
    C(EINPROGRESS), C(ECANCELED), C(ENAMETOOLONG), C(EPROTO),
    C(SIGHUP), C(SIGINT), C(SIGQUIT), C(SIGUSR1), C(SIGUSR2), C(SIGTERM),
    C(SIGCHLD), C(SIGPIPE), C(SIGALRM), C(SIGWINCH),
    {NULL, 0},
};
/* clang-format on */
#undef C

static const luaL_Reg modfuncs[] = {
    {"socket", sock_new},
    {"socketpair", sock_pair},
    {"getaddrinfo", resolve_getaddrinfo},
    {"run", loop_run},
    {"spawn", loop_spawn},
    {"sleep", loop_sleep},
    {"now", mod_now},
    {"time", mod_time},
    {"ready", ready_wait},
    {"pending", ready_pending},
    {"current", task_current},
    {"tasks", task_list},
    {"workers", workers_lua},
    {"worker", workers_id_lua},
    {"signal", signal_lua},
    {"listeners", systemd_listeners},
    {"dump", task_dump},
    {"loop", embed_new},
    {"cond", cond_new},
    {"tls_context", tls_context},
    {NULL, NULL},
};

int luaopen_csock_core(lua_State *L) {
  luaL_newlib(L, modfuncs);
  sock_open_meta(L);
  sock_add_methods(L, io_methods);
  sock_add_methods(L, read_methods);
  sock_add_methods(L, sendfile_methods);
  sock_add_methods(L, opt_methods);
  sock_add_methods(L, tls_methods);
  sock_add_methods(L, http_methods);
  sock_add_methods(L, compat_methods);
  embed_open_meta(L);
  task_open_meta(L);
  cond_open_meta(L);
  coro_install(L);
  ws_open(L);
  http_open(L);
  for (const named_int *c = constants; c->name; c++) {
    lua_pushinteger(L, c->value);
    lua_setfield(L, -2, c->name);
  }
  opt_push_constants(L);
  tls_open(L);
  lua_pushliteral(L, CSOCK_VERSION);
  lua_setfield(L, -2, "_VERSION");
  return 1;
}
