/*
** systemd.c - csock.listeners(): sockets passed by socket activation.
** The service manager passes descriptors 3.. and sets LISTEN_PID,
** LISTEN_FDS and LISTEN_FDNAMES (sd_listen_fds(3)).  They are taken once:
** the variables are removed so that child processes do not take them too.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "csock.h"

#define LISTEN_FDS_START 3

static int fd_option(int fd, int name) {
  int v = 0;
  socklen_t len = sizeof v;
  return getsockopt(fd, SOL_SOCKET, name, &v, &len) == 0 ? v : -1;
}

/* Wraps an inherited descriptor; 0 if it is not a socket csock knows. */
static int push_inherited(lua_State *L, int fd) {
  int family = fd_option(fd, SO_DOMAIN), type = fd_option(fd, SO_TYPE);
  if ((family != AF_INET && family != AF_INET6 && family != AF_UNIX) ||
      (type != SOCK_STREAM && type != SOCK_DGRAM && type != SOCK_SEQPACKET))
    return 0;
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
    return 0;
  csock_socket *s = sock_push(L, family, type);
  s->fd = fd;
  s->inherited = 1;
  s->listening = fd_option(fd, SO_ACCEPTCONN) == 1;
  return 1;
}

/* Pushes the name of the i-th descriptor from LISTEN_FDNAMES, or nil. */
static void push_name(lua_State *L, const char *names, int i) {
  for (const char *p = names; p; i--) {
    const char *end = strchr(p, ':');
    if (i == 0) {
      size_t n = end ? (size_t)(end - p) : strlen(p);
      if (n > 0)
        lua_pushlstring(L, p, n);
      else
        lua_pushnil(L);
      return;
    }
    p = end ? end + 1 : NULL;
  }
  lua_pushnil(L);
}

int systemd_listeners(lua_State *L) {
  lua_newtable(L);
  const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
  if (pid == NULL || fds == NULL || strtol(pid, NULL, 10) != (long)getpid()) return 1;
  long n = strtol(fds, NULL, 10);
  if (n <= 0 || n > 4096) return 1;
  const char *names_env = getenv("LISTEN_FDNAMES");
  char *names = names_env ? strdup(names_env) : NULL;
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  int count = 0;
  for (int i = 0; i < n; i++) {
    if (!push_inherited(L, LISTEN_FDS_START + i)) continue;
    lua_pushvalue(L, -1);
    lua_rawseti(L, -3, ++count);
    push_name(L, names, i);
    if (lua_isnil(L, -1) || lua_rawget(L, -3) != LUA_TNIL) { /* unnamed, or name taken */
      lua_pop(L, 2);
      continue;
    }
    lua_pop(L, 1);
    push_name(L, names, i);
    lua_insert(L, -2);
    lua_rawset(L, -3);
  }
  free(names);
  return 1;
}
