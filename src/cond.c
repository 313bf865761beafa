/*
** cond.c - csock.cond(): a condition that tasks wait on until another task
** signals it, the way pthread_cond_t (or cqueues' condition) does between
** threads.  Tasks never run at the same time, so no mutex goes with it: a
** task checks its predicate, waits, and checks again when woken.  A signal
** with nobody waiting is lost, as pthread_cond_signal's is.
**
** The waiting itself is the loop's (loop_wait_on): the condition only owns
** the list of its waiters, which the loop keeps oldest first and from which
** a timeout, a cancel or a signal takes a task out.
*/
#include <errno.h>

#include "csock.h"

typedef struct csock_cond {
  csock_waitlist waiters;
} csock_cond;

static csock_cond *cond_check(lua_State *L) {
  return (csock_cond *)csock_checkudata(L, 1, CSOCK_COND);
}

/* csock.cond(): a new condition with no waiters. */
int cond_new(lua_State *L) {
  csock_cond *c = (csock_cond *)lua_newuserdatauv(L, sizeof *c, 0);
  c->waiters.head = c->waiters.tail = NULL;
  luaL_setmetatable(L, CSOCK_COND);
  return 1;
}

static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status, (void)ctx;
  int woken = loop_woken(L);
  if (woken < 0) return csock_failure(L, woken);
  lua_pushboolean(L, 1);
  return 1;
}

/*
** c:wait([timeout]): suspends the task until c:signal() or c:broadcast()
** picks it (true) or timeout seconds pass (nil, "timeout", ETIMEDOUT).
*/
static int cond_wait(lua_State *L) {
  csock_cond *c = cond_check(L);
  double deadline = -1;
  if (!lua_isnoneornil(L, 2)) {
    lua_Number t = csock_checknumber(L, 2);
    csock_checkduration(L, 2, t, "timeout");
    deadline = csock_now() + t;
  }
  lua_settop(L, 1); /* the condition stays on the stack while its waiter does */
  int e = loop_wait_on(L, &c->waiters, deadline, 0, wait_k);
  if (e == -EPERM) return luaL_error(L, "wait: must be called from a task");
  if (e == -ENOMEM) return luaL_error(L, "not enough memory");
  return csock_failure(L, e);
}

/* c:signal(): wakes the task that has waited longest; whether there was one. */
static int cond_signal(lua_State *L) {
  lua_pushboolean(L, loop_wake_first(&cond_check(L)->waiters));
  return 1;
}

/* c:broadcast(): wakes every waiting task, oldest first; how many. */
static int cond_broadcast(lua_State *L) {
  lua_pushinteger(L, loop_wake_all(&cond_check(L)->waiters));
  return 1;
}

static int cond_tostring(lua_State *L) {
  const csock_cond *c = cond_check(L);
  int n = 0;
  for (const struct csock_task *t = c->waiters.head; t; t = loop_next_waiter(t)) n++;
  /* the address is the one the task dump names (the list is the userdata's first field) */
  lua_pushfstring(L, "csock cond %p (%d waiting)", (const void *)c, n);
  return 1;
}

static const luaL_Reg cond_meth[] = {
    {"wait", cond_wait},
    {"signal", cond_signal},
    {"broadcast", cond_broadcast},
    {NULL, NULL},
};

void cond_open_meta(lua_State *L) {
  luaL_newmetatable(L, CSOCK_COND);
  lua_pushcfunction(L, cond_tostring);
  lua_setfield(L, -2, "__tostring");
  luaL_newlib(L, cond_meth);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
