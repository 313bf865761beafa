/*
** task.c - task handles (join, cancel, status, name, id), csock.current,
** csock.tasks, and the dump of every task with its traceback.  The tasks
** themselves, their scheduling and their waits are loop.c's.
*/
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "loop.h"

static csock_task *task_check(lua_State *L, int idx) {
  return (csock_task *)csock_checkudata(L, idx, CSOCK_TASK);
}

static int push_results(lua_State *L, csock_task *t) {
  switch (t->state) {
    case T_DONE: {
      lua_pushboolean(L, 1);
      if (t->nresults == 0) return 1;
      luaL_checkstack(L, t->nresults, "too many results");
      lua_getiuservalue(L, 1, UV_RESULT);
      int tbl = lua_gettop(L);
      for (int i = 1; i <= t->nresults; i++) lua_rawgeti(L, tbl, i);
      lua_remove(L, tbl);
      return 1 + t->nresults;
    }
    case T_FAILED:
      lua_pushboolean(L, 0);
      lua_getiuservalue(L, 1, UV_RESULT);
      return 2;
    default:
      lua_pushboolean(L, 0);
      lua_pushliteral(L, "cancelled");
      return 2;
  }
}

static int join_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status, (void)ctx;
  loop_woken(L);
  csock_task *t = task_check(L, 1);
  if (t->state < T_DONE) return luaL_error(L, "join: woken before the task ended");
  return push_results(L, t);
}

static int task_join(lua_State *L) {
  csock_task *t = task_check(L, 1);
  lua_settop(L, 1);
  if (t->state >= T_DONE) return push_results(L, t);
  csock_task *me = loop_yieldable_task(L);
  if (me == NULL) return luaL_error(L, "join: must be called from a task");
  if (me == t) return csock_argerror(L, 1, "a task cannot join itself");
  if (me->cancel) return loop_yield_ready(L, me, 0, join_k);
  me->wait_kind = W_JOIN;
  me->on.task = t;
  me->link.next_joiner = t->joiners;
  t->joiners = me;
  me->state = T_WAITING;
  return lua_yieldk(L, 0, 0, join_k);
}

static int task_cancel(lua_State *L) {
  csock_task *t = task_check(L, 1);
  if (t->state >= T_DONE) {
    lua_pushboolean(L, 0);
    return 1;
  }
  t->cancel = 1;
  loop_wake_task(t, -ECANCELED); /* a waiting task ends now, others at their next wait */
  lua_pushboolean(L, 1);
  return 1;
}

static const char *task_status_name(const csock_task *t) {
  switch (t->state) {
    case T_DONE: return "done";
    case T_FAILED: return "failed";
    case T_CANCELLED: return "cancelled";
    case T_WAITING: return t->cancel ? "cancelled" : "waiting";
    default: return t->cancel && t->state == T_READY ? "cancelled" : "running";
  }
}

static int task_status(lua_State *L) {
  lua_pushstring(L, task_status_name(task_check(L, 1)));
  return 1;
}

static int task_name(lua_State *L) {
  task_check(L, 1);
  if (lua_isnone(L, 2)) {
    loop_task_extra(L, 1, EXTRA_NAME);
    return 1;
  }
  if (!lua_isnil(L, 2)) csock_checkstring(L, 2);
  lua_settop(L, 2);
  loop_task_setextra(L, 1, EXTRA_NAME);
  lua_settop(L, 1);
  return 1;
}

static int task_id(lua_State *L) {
  lua_pushinteger(L, task_check(L, 1)->id);
  return 1;
}

static int task_tostring(lua_State *L) {
  csock_task *t = task_check(L, 1);
  if (loop_task_extra(L, 1, EXTRA_NAME) == LUA_TSTRING)
    lua_pushfstring(L, "csock task %I (%s, %s)", (LUAI_UACINT)t->id, lua_tostring(L, -1),
                    task_status_name(t));
  else
    lua_pushfstring(L, "csock task %I (%s)", (LUAI_UACINT)t->id, task_status_name(t));
  return 1;
}

/* csock.current(): the handle of the running task, or nil. */
int task_current(lua_State *L) {
  csock_task *t = loop_current_task(L);
  if (t == NULL || task_ended(t))
    lua_pushnil(L);
  else
    loop_push_handle(L, t);
  return 1;
}

/* csock.tasks(): an array of the handles of every live task. */
int task_list(lua_State *L) {
  if (loop_running() == NULL)
    lua_newtable(L);
  else
    loop_push_tasks(L, loop_running());
  return 1;
}

static const luaL_Reg task_meth[] = {
    {"join", task_join}, {"cancel", task_cancel}, {"status", task_status},
    {"name", task_name}, {"id", task_id},         {NULL, NULL},
};

/* ---------------------------------------------------------------- dump */

static void dump_wait(luaL_Buffer *b, lua_State *L, const csock_task *t) {
  if (wait_watch(t)) {
    lua_pushfstring(L, "%s fd %d", t->wait_dir == CSOCK_READ ? "read" : "write", wait_watch(t)->fd);
    luaL_addvalue(b);
  } else if (joining(t)) {
    lua_pushfstring(L, "join task %I", (LUAI_UACINT)joining(t)->id);
    luaL_addvalue(b);
  } else if (waitlist(t)) {
    lua_pushfstring(L, "cond %p", (const void *)waitlist(t));
    luaL_addvalue(b);
  } else if (t->heap_pos) {
    luaL_addstring(b, "sleep");
  } else {
    luaL_addstring(b, t->state == T_READY ? "ready" : "-");
  }
  if (t->heap_pos) {
    lua_pushfstring(L, ", deadline in %f s", (LUAI_UACNUMBER)(task_deadline(t) - csock_now()));
    luaL_addvalue(b);
  }
}

/*
** csock.dump(): a text that lists every live task -- id, name, status,
** what it waits on, traceback -- the way a Go program dumps goroutines.
** The host writes it to stderr on SIGQUIT.
*/
int task_dump(lua_State *L) {
  luaL_Buffer b;
  csock_loop *lp = loop_running();
  if (lp == NULL) {
    lua_pushliteral(L, "csock: no loop is running\n");
    return 1;
  }
  loop_push_tasks(L, lp); /* below the buffer, which must stay on top */
  int list = lua_gettop(L);
  luaL_buffinit(L, &b);
  lua_pushfstring(L, "csock: %I live tasks\n", (LUAI_UACINT)lp->alive);
  luaL_addvalue(&b);
  for (lua_Integer i = 1; lua_rawgeti(L, list, i) == LUA_TUSERDATA; i++) {
    csock_task *t = (csock_task *)lua_touserdata(L, -1);
    int named = loop_task_extra(L, -1, EXTRA_NAME) == LUA_TSTRING;
    lua_pushfstring(L, "\ntask %I%s%s%s: %s, ", (LUAI_UACINT)t->id, named ? " (" : "",
                    named ? lua_tostring(L, -1) : "", named ? ")" : "", task_status_name(t));
    lua_remove(L, -2);
    lua_remove(L, -2);
    luaL_addvalue(&b);
    dump_wait(&b, L, t);
    luaL_addchar(&b, '\n');
    if (t->state == T_RUNNING || t->co == L) {
      luaL_addstring(&b, "\t(running: this task asked for the dump)\n");
      continue;
    }
    luaL_traceback(L, t->co, NULL, 0);
    luaL_addvalue(&b);
    luaL_addchar(&b, '\n');
  }
  lua_pop(L, 1); /* the nil after the last handle */
  luaL_pushresult(&b);
  return 1;
}

/* The tasks' metatable, kept by loop.c for the handles task_new makes. */
void task_open_meta(lua_State *L) {
  luaL_newmetatable(L, CSOCK_TASK);
  lua_pushvalue(L, -1);
  loop_set_task_meta(L);
  lua_pushcfunction(L, task_tostring);
  lua_setfield(L, -2, "__tostring");
  luaL_newlibtable(L, task_meth);
  luaL_setfuncs(L, task_meth, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
