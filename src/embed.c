/*
** embed.c - csock.loop(): a loop that another program's main loop drives
** with step(), watching fd() (readable when a socket has an event or a
** deadline is due: a timerfd armed after every step) and timeout().
*/
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <sys/timerfd.h>
#include <time.h>

#include "loop.h"

typedef struct loop_box {
  csock_loop *lp;
} loop_box;

static csock_loop *box_check(lua_State *L) {
  loop_box *box = (loop_box *)csock_checkudata(L, 1, CSOCK_LOOP);
  csock_argcheck(L, box->lp != NULL, 1, "loop is closed");
  return box->lp;
}

/* csock.loop(): a loop that another main loop drives with step(). */
int embed_new(lua_State *L) {
  loop_box *box = (loop_box *)lua_newuserdatauv(L, sizeof *box, 0);
  box->lp = NULL;
  luaL_setmetatable(L, CSOCK_LOOP);
  int e = 0;
  csock_loop *lp = loop_create(L, &e);
  if (lp == NULL) return csock_failure(L, e);
  int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  e = fd < 0 ? errno : -loop_watch_timer(lp, fd);
  if (e != 0) {
    loop_free(lp);
    return csock_failure(L, e);
  }
  loop_watch_signals(lp);
  box->lp = lp;
  return 1;
}

/*
** Seconds until the loop has work: 0 with a task ready, the time to the
** nearest deadline, or -1 with neither (only I/O can wake it then).
*/
static double box_due(const csock_loop *lp) {
  if (lp->ready_head) return 0;
  if (lp->heap_len == 0) return -1;
  double left = lp->heap[0].deadline - csock_now();
  return left > 0 ? left : 0;
}

/*
** Arms the timerfd for the loop's next deadline, so that loop:fd() becomes
** readable when a step is due and a host loop needs no periodic timer.
*/
static void box_arm(csock_loop *lp) {
  struct itimerspec its = {0};
  int flags = 0;
  if (lp->ready_head) {
    its.it_value.tv_nsec = 1; /* now: relative, the smallest nonzero value */
  } else if (lp->heap_len) {
    double d = lp->heap[0].deadline; /* CLOCK_MONOTONIC, as csock_now */
    if (d > 4e9) d = 4e9;
    its.it_value.tv_sec = (time_t)d;
    its.it_value.tv_nsec = (long)((d - (double)its.it_value.tv_sec) * 1e9);
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
    flags = TFD_TIMER_ABSTIME; /* a deadline already past fires at once */
  }
  timerfd_settime(lp->timer_fd, flags, &its, NULL);
}

/* A disarmed timerfd is not readable, so epoll reports no expiry queued before. */
static void box_disarm(csock_loop *lp) {
  struct itimerspec off = {0};
  timerfd_settime(lp->timer_fd, 0, &off, NULL);
}

static int box_spawn(lua_State *L) {
  csock_loop *lp = box_check(L);
  csock_checktype(L, 2, LUA_TFUNCTION);
  loop_task_new(L, lp, 2);
  box_arm(lp);
  lua_settop(L, 2);
  return 1;
}

static int box_turn(lua_State *L) {
  csock_loop *lp = (csock_loop *)lua_touserdata(L, 1);
  long long max_wait = (long long)lua_tointeger(L, 2);
  loop_run_ready(lp);
  loop_turn(L, lp, lp->ready_head ? 0 : max_wait);
  loop_run_ready(lp);
  return 0;
}

/*
** Frees an embedded loop that is not running: every live task is cancelled
** (its to-be-closed variables closed, in the caller's thread L) first.
*/
static void box_free(lua_State *L, csock_loop *lp) {
  lp->L = L;
  loop_end_all(lp, 1);
  loop_free(lp);
}

/* Runs f(lp, arg) with lp as the running loop; re-raises its error.
   Returns 0 when a task closed the loop meanwhile (lp is freed then). */
static int box_drive(lua_State *L, csock_loop *lp, lua_CFunction f, lua_Integer arg) {
  if (loop_running()) luaL_error(L, "csock: a loop is already running here");
  lp->L = L;
  loop_set_running(lp);
  loop_watch_signals(lp); /* csock.signal may have come after csock.loop() */
  box_disarm(lp);         /* the step itself keeps time now; a stale expiry must not end its wait */
  lua_pushcfunction(L, f);
  lua_pushlightuserdata(L, lp);
  lua_pushinteger(L, arg);
  int status = lua_pcall(L, 2, 0, 0);
  loop_set_running(NULL);
  int alive = !lp->closing;
  if (!alive)
    box_free(L, lp); /* a task closed its own loop */
  else
    box_arm(lp);
  if (status != LUA_OK) lua_error(L);
  return alive;
}

/* loop:step([timeout]): one turn; returns the number of live tasks. */
static int box_step(lua_State *L) {
  csock_loop *lp = box_check(L);
  lua_Number t = lua_isnoneornil(L, 2) ? 0 : csock_checknumber(L, 2);
  csock_checkduration(L, 2, t, "timeout");
  lua_Integer wait_us = t > 86400 ? 86400000000LL : (lua_Integer)ceil(t * 1e6);
  lua_pushinteger(L, box_drive(L, lp, box_turn, wait_us) ? (lua_Integer)lp->alive : 0);
  return 1;
}

static int box_fd(lua_State *L) {
  lua_pushinteger(L, loop_fd(box_check(L)));
  return 1;
}

/* loop:timeout(): seconds until a step is due (0: now), or nil when only I/O can wake it. */
static int box_timeout(lua_State *L) {
  double due = box_due(box_check(L));
  if (due < 0)
    lua_pushnil(L);
  else
    lua_pushnumber(L, due);
  return 1;
}

/* loop:close(): cancels the live tasks and frees the loop; harmless twice.
   From one of the loop's own tasks, the loop goes when the step ends. */
static int box_close(lua_State *L) {
  loop_box *box = (loop_box *)csock_checkudata(L, 1, CSOCK_LOOP);
  csock_loop *lp = box->lp;
  if (lp == NULL) return 0;
  box->lp = NULL;
  if (loop_running() == lp) {
    lp->closing = 1;
    loop_cancel_all(lp); /* an embedded loop has no main task: all of them */
    return 0;
  }
  box_free(L, lp);
  return 0;
}

static const luaL_Reg box_meth[] = {
    {"spawn", box_spawn},     {"step", box_step},   {"fd", box_fd},
    {"timeout", box_timeout}, {"close", box_close}, {NULL, NULL},
};

void embed_open_meta(lua_State *L) {
  luaL_newmetatable(L, CSOCK_LOOP);
  lua_pushcfunction(L, box_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, box_close);
  lua_setfield(L, -2, "__close");
  luaL_newlibtable(L, box_meth);
  luaL_setfuncs(L, box_meth, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
