/*
** signal.c - csock.signal(signo, fn): signals become tasks.
** The C handler only writes the signal number into a non-blocking pipe
** (the self-pipe trick); the loop polls the pipe's read end and spawns
** fn(signo) as a task, so a handler may block, write and close freely.
** Handlers run only while a loop runs (csock.run, the host, loop:step).
*/
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "csock.h"

#define SIGNAL_HANDLERS "csock.signals"

#define SIGNO_LIMIT 65 /* csock.signal takes signal numbers 1 to 64 */

static int pipe_fds[2] = {-1, -1};
static int handled_count;                  /* handlers installed, less the passive ones */
static unsigned char passive[SIGNO_LIMIT]; /* installed, but cannot end a wait */

static void on_signal(int signo) {
  int saved = errno;
  unsigned char b = (unsigned char)signo;
  if (write(pipe_fds[1], &b, 1) < 0) { /* a full pipe already has wake-ups queued */
  }
  errno = saved;
}

/* The read end of the signal pipe, or -1 before the first csock.signal. */
int signal_fd(void) { return pipe_fds[0]; }

/* Whether any signal has a Lua handler (the loop then waits for signals). */
int signal_active(void) { return handled_count > 0; }

/* Checked as the integer Lua gave: a cast to int first would let 2^32 + 15 pass as 15. */
static int valid_signal(lua_Integer signo) {
  return signo > 0 && signo < SIGNO_LIMIT && signo != SIGKILL && signo != SIGSTOP;
}

/*
** A fault (a bad access, a bad instruction, a division by zero) is raised
** again by the very instruction that caused it: a handler that only notes
** it would return into that instruction forever.
*/
static int fault_signal(lua_Integer signo) {
  return signo == SIGSEGV || signo == SIGBUS || signo == SIGFPE || signo == SIGILL;
}

/*
** In a process just forked (csock.workers): the pipe came along shared with
** the parent and every sibling, so a signal sent to one process could be
** read, and handled, by another.  The child gets a pipe of its own under
** the same descriptor numbers (what the loops watch stays right).
*/
void signal_after_fork(void) {
  int fresh[2];
  if (pipe_fds[0] < 0 || pipe2(fresh, O_NONBLOCK | O_CLOEXEC) < 0) return;
  dup3(fresh[0], pipe_fds[0], O_CLOEXEC);
  dup3(fresh[1], pipe_fds[1], O_CLOEXEC);
  close(fresh[0]);
  close(fresh[1]);
}

/* csock.signal(signo, fn): fn(signo) runs as a task; nil restores the default. */
int signal_lua(lua_State *L) {
  lua_Integer signo = csock_checkinteger(L, 1);
  csock_argcheck(L, valid_signal(signo), 1, "invalid signal number");
  csock_argcheck(L, !fault_signal(signo), 1, "cannot handle a fault signal");
  if (!lua_isnil(L, 2)) csock_checktype(L, 2, LUA_TFUNCTION);
  if (pipe_fds[0] < 0 && pipe2(pipe_fds, O_NONBLOCK | O_CLOEXEC) < 0)
    return csock_failure(L, errno);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, SIGNAL_HANDLERS);
  int had = lua_rawgeti(L, -1, signo) != LUA_TNIL;
  lua_pop(L, 1);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sa.sa_handler = lua_isnil(L, 2) ? SIG_DFL : on_signal;
  if (sigaction((int)signo, &sa, NULL) < 0) return csock_failure(L, errno);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, signo);
  handled_count += (lua_isnil(L, 2) ? 0 : 1) - (had && !passive[signo] ? 1 : 0);
  passive[signo] = 0;
  lua_pushboolean(L, 1);
  return 1;
}

/*
** The handler installed for signo only reports (the host's SIGQUIT dump):
** it cannot wake a task, so it does not keep a loop whose tasks all wait
** on each other from ending with its deadlock error.  Installing another
** handler for signo makes it count again.
*/
void signal_mark_passive(lua_State *L, int signo) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, SIGNAL_HANDLERS);
  int installed = lua_rawgeti(L, -1, signo) != LUA_TNIL;
  lua_pop(L, 2);
  if (installed && !passive[signo]) {
    passive[signo] = 1;
    handled_count--;
  }
}

/*
** Drains the pipe and pushes, for each signal received, its handler and
** number as a pair on the stack; returns how many pairs were pushed.
*/
int signal_collect(lua_State *L) {
  unsigned char buf[64];
  int pairs = 0;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, SIGNAL_HANDLERS);
  int handlers = lua_gettop(L);
  for (;;) {
    ssize_t n = read(pipe_fds[0], buf, sizeof buf);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      break;
    }
    for (ssize_t i = 0; i < n; i++) {
      lua_checkstack(L, 3);
      if (lua_rawgeti(L, handlers, buf[i]) == LUA_TFUNCTION) {
        lua_pushinteger(L, buf[i]);
        pairs++;
      } else {
        lua_pop(L, 1);
      }
    }
  }
  lua_remove(L, handlers);
  return pairs;
}
