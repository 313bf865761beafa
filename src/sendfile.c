/*
** sendfile.c - s:sendfile(file [, offset [, count]]): bytes of a regular
** file to a socket without passing them through Lua.
**
** On a plain socket the kernel moves them (sendfile(2): page cache to
** socket, one copy fewer than read + write and no Lua strings).  Over a
** transport (TLS) the bytes must pass through user space to be encrypted,
** so they are pread(2) into the scratch block and sent through it; the
** same copy is the fallback when the kernel refuses sendfile for the file
** (EINVAL, ENOSYS: a file system without it).
**
** It waits as write does (io.c): the deadline is fixed on the first pass, EAGAIN waits
** for the socket, and all that must survive a wait is on the Lua stack and
** in the lua_KContext.  The file's own position is neither used nor moved:
** every read gives its offset.
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "csock.h"

#define SENDFILE_FD "csock.sendfile.fd" /* a descriptor sendfile opened from a path */
#define SENDFILE_MAX 0x7ffff000L        /* the most sendfile(2) moves in one call */
#define COPY_FLAG 1                     /* ctx: the kernel refused; copy through user space */

/* Stack slots of the continuation. */
enum { SF_SOCK = 1, SF_FILE, SF_OFFSET, SF_COUNT };

/* ---------------------------------------------------------------- the file */

static int fd_gc(lua_State *L) {
  int *fd = (int *)lua_touserdata(L, 1);
  if (*fd >= 0) close(*fd);
  *fd = -1;
  return 0;
}

/* Opens path into a userdata that owns the descriptor, placed at SF_FILE: 0 or errno. */
static int open_path(lua_State *L, const char *path) {
  int *fd = (int *)lua_newuserdatauv(L, sizeof *fd, 0);
  *fd = -1; /* owned from birth: closed by __gc whatever happens next */
  if (luaL_newmetatable(L, SENDFILE_FD)) {
    lua_pushcfunction(L, fd_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_replace(L, SF_FILE);
  *fd = open(path, O_RDONLY | O_CLOEXEC);
  return *fd < 0 ? errno : 0;
}

/*
** The descriptor of the file at SF_FILE, or -1 when it was closed (an io
** file another task closed while this one waited).
*/
static int source_fd(lua_State *L) {
  if (lua_type(L, SF_FILE) == LUA_TNUMBER) return (int)lua_tointeger(L, SF_FILE);
  luaL_Stream *f = (luaL_Stream *)luaL_testudata(L, SF_FILE, LUA_FILEHANDLE);
  if (f != NULL) return f->closef == NULL ? -1 : fileno(f->f);
  return *(int *)lua_touserdata(L, SF_FILE);
}

/* Closes a descriptor sendfile opened itself, as soon as it is done with it. */
static void source_done(lua_State *L) {
  int *fd = (int *)luaL_testudata(L, SF_FILE, SENDFILE_FD);
  if (fd != NULL && *fd >= 0) {
    close(*fd);
    *fd = -1;
  }
}

/* ---------------------------------------------------------------- one step */

/*
** sendfile(2) without SIGPIPE: it has no MSG_NOSIGNAL, and a library must
** not kill a plain lua5.4 whose peer went away.  SIGPIPE is blocked for
** the call; one it raised is taken back with sigtimedwait.  A SIGPIPE the
** thread already blocked (and maybe waits for) is left alone unless this
** call is the one that raised it.  Not only a failed call raises one: a
** call whose peer resets the connection part-way returns the bytes it did
** send and leaves the SIGPIPE of the failed rest pending, so any call may.
*/
static ssize_t sendfile_quiet(int out, int in, off_t *off, size_t n) {
  sigset_t pipe, old;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, &old);
  int was_pending = 0;
  if (sigismember(&old, SIGPIPE)) {
    sigset_t pend;
    sigpending(&pend);
    was_pending = sigismember(&pend, SIGPIPE);
  }
  ssize_t r = sendfile(out, in, off, n);
  int e = errno;
  if (!was_pending) {
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe, NULL, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  errno = e;
  return r;
}

/*
** One pread of the file and one send of what it gave, through the
** transport when there is one: bytes sent (> 0), 0 at the file's end,
** -errno, or a transport's -XPORT_WANT_*.  A short send reads the rest
** again next time: the page cache makes that cheaper than keeping it.
*/
static long copy_step(csock_socket *s, int fd, off_t off, size_t left) {
  size_t room;
  char *p = buf_scratch(&room);
  if (s->xport != NULL && room > XPORT_CHUNK) room = XPORT_CHUNK;
  ssize_t got;
  do {
    got = pread(fd, p, left < room ? left : room, off);
  } while (got < 0 && errno == EINTR);
  if (got <= 0) return got < 0 ? -errno : 0;
  if (s->xport != NULL) return s->xport->ops->send(s, p, (size_t)got);
  ssize_t w = send(s->fd, p, (size_t)got, MSG_NOSIGNAL);
  if (w < 0) return -errno;
  if (w < got) loop_blocked(&s->watch, CSOCK_WRITE);
  return (long)w;
}

/* One sendfile(2): as copy_step; *refused when the kernel cannot for this file. */
static long kernel_step(csock_socket *s, int fd, off_t off, size_t left, int *refused) {
  size_t ask = left < (size_t)SENDFILE_MAX ? left : (size_t)SENDFILE_MAX;
  ssize_t w = sendfile_quiet(s->fd, fd, &off, ask);
  if (w < 0) {
    *refused = errno == EINVAL || errno == ENOSYS;
    return -errno;
  }
  if (w > 0 && (size_t)w < ask)
    loop_blocked(&s->watch, CSOCK_WRITE); /* the socket buffer is full */
  return (long)w;
}

/* ---------------------------------------------------------------- the method */

/* The results: sent, or nil, message, errno, sent.  e == EBADF: the io file was closed. */
static int sendfile_result(lua_State *L, const csock_socket *s, int e, size_t sent) {
  source_done(L);
  if (e == 0) {
    lua_pushinteger(L, (lua_Integer)sent);
    return 1;
  }
  if (e == EBADF)
    csock_failmsg(L, "file closed", EBADF);
  else
    stream_error(L, s, e); /* -EBADF from stream_resumed: the socket was closed */
  lua_pushinteger(L, (lua_Integer)sent);
  return 4;
}

/* Stack: socket, file, offset, count.  ctx: bytes sent << 1 | COPY_FLAG. */
static int sendfile_k(lua_State *L, int status, lua_KContext ctx) {
  csock_socket *s = (csock_socket *)lua_touserdata(L, SF_SOCK);
  off_t offset = (off_t)lua_tointeger(L, SF_OFFSET);
  size_t count = (size_t)lua_tointeger(L, SF_COUNT);
  double deadline = sock_op_deadline(L, s, status);
  int e = stream_resumed(L, status, s);
  while (e == 0) {
    size_t sent = (size_t)(ctx >> 1);
    if (sent >= count) return sendfile_result(L, s, 0, sent);
    if (!loop_ready(&s->watch, CSOCK_WRITE)) {
      e = loop_wait(L, &s->watch, CSOCK_WRITE, deadline, ctx, sendfile_k);
      continue;
    }
    int fd = source_fd(L);
    if (fd < 0) return sendfile_result(L, s, EBADF, sent);
    sock_before_send(s);
    int refused = 0;
    long r = s->xport != NULL || (ctx & COPY_FLAG)
                 ? copy_step(s, fd, offset + (off_t)sent, count - sent)
                 : kernel_step(s, fd, offset + (off_t)sent, count - sent, &refused);
    if (r > 0) {
      ctx += (lua_KContext)r << 1;
    } else if (r == 0) { /* the file ended before count: it shrank */
      return sendfile_result(L, s, 0, sent);
    } else if (refused) {
      ctx |= COPY_FLAG;
    } else if (r == -EBADF) { /* a descriptor closed behind csock's back: which one? */
      e = fcntl(fd, F_GETFD) < 0 ? EBADF : -EBADF;
    } else if (s->xport != NULL) {
      e = stream_xport_wait(L, s, r, deadline, ctx, sendfile_k);
    } else {
      e = stream_again_or_fail(L, s, CSOCK_WRITE, (int)-r, deadline, ctx, sendfile_k);
    }
  }
  return sendfile_result(L, s, e, (size_t)(ctx >> 1));
}

/*
** Puts the file argument in its final form at SF_FILE and returns its
** descriptor, or -1 with the failure results pushed (*nres of them).
*/
static int check_file(lua_State *L, int *nres) {
  switch (lua_type(L, SF_FILE)) {
    case LUA_TSTRING: {
      const char *path = lua_tostring(L, SF_FILE);
      int e = open_path(L, path);
      if (e == 0) return source_fd(L);
      lua_pushnil(L);
      lua_pushfstring(L, "%s: %s", path, strerror(e));
      lua_pushinteger(L, e);
      *nres = 3;
      return -1;
    }
    case LUA_TNUMBER: {
      lua_Integer fd = csock_checkinteger(L, SF_FILE);
      csock_argcheck(L, fd >= 0 && fd <= INT_MAX, SF_FILE, "invalid descriptor");
      return (int)fd;
    }
    default: {
      luaL_Stream *f = (luaL_Stream *)luaL_testudata(L, SF_FILE, LUA_FILEHANDLE);
      if (f == NULL) return csock_typeerror(L, SF_FILE, "file, path or descriptor");
      csock_argcheck(L, f->closef != NULL, SF_FILE, "file is closed");
      return fileno(f->f);
    }
  }
}

/* Fixes count from the file's size (the rest of it from offset, at most). */
static int check_range(lua_State *L, int fd, lua_Integer offset) {
  struct stat st;
  if (fstat(fd, &st) < 0) return errno;
  if (S_ISDIR(st.st_mode)) return EISDIR;
  if (!S_ISREG(st.st_mode)) return EINVAL;
  lua_Integer rest = offset < st.st_size ? (lua_Integer)st.st_size - offset : 0;
  lua_Integer count = lua_isnoneornil(L, SF_COUNT) ? rest : lua_tointeger(L, SF_COUNT);
  lua_pushinteger(L, count < rest ? count : rest);
  lua_replace(L, SF_COUNT);
  return 0;
}

static int io_sendfile(lua_State *L) {
  sock_checkopen(L, SF_SOCK);
  csock_checkany(L, SF_FILE);
  lua_Integer offset = csock_optinteger(L, SF_OFFSET, 0);
  csock_argcheck(L, offset >= 0, SF_OFFSET, "offset must not be negative");
  if (!lua_isnoneornil(L, SF_COUNT)) {
    lua_Integer count = csock_checkinteger(L, SF_COUNT);
    csock_argcheck(L, count >= 0, SF_COUNT, "count must not be negative");
  }
  lua_settop(L, SF_COUNT);
  lua_pushinteger(L, offset);
  lua_replace(L, SF_OFFSET);
  int nres = 0;
  int fd = check_file(L, &nres);
  if (fd < 0) return nres;
  int e = check_range(L, fd, offset);
  if (e != 0) {
    source_done(L);
    return csock_failure(L, e);
  }
  return sendfile_k(L, LUA_OK, 0);
}

const luaL_Reg sendfile_methods[] = {
    {"sendfile", io_sendfile},
    {NULL, NULL},
};
