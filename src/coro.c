/*
** coro.c - coroutine.resume and coroutine.wrap that let a task's wait pass
** through the coroutines a script makes.
**
** Inside a task, a socket call that must wait yields the task's coroutine
** to the loop.  In a coroutine the script made itself (an iterator built
** with coroutine.wrap, a parser run as a coroutine) that yield would land
** in the script's resume instead.  These two functions replace Lua's own
** when the module loads: when the coroutine they resume yields for a csock
** wait, they yield their own thread in turn, up to the task, and when the
** loop resumes the task they resume the coroutine where it waited (loop.c,
** "Nested coroutines").  Anything else -- arguments, results, errors, a
** plain coroutine.yield -- behaves as with lcorolib's functions.
** coroutine.close is wrapped only to refuse a coroutine parked that way,
** coroutine.running only to tell the loop a task's coroutine was seen.
** A task's own coroutine counts as parked while the task lives: only the
** loop may resume or close it.
*/
#include "csock.h"

enum { BY_RESUME, BY_WRAP };

static lua_State *resumed_coroutine(lua_State *L, lua_KContext how) {
  return lua_tothread(L, how == BY_WRAP ? lua_upvalueindex(1) : 1);
}

static void push_resumed(lua_State *L, lua_KContext how) {
  lua_pushvalue(L, how == BY_WRAP ? lua_upvalueindex(1) : 1);
}

/* How coroutine.resume reports: true and the values, or false and the error. */
static int resume_result(lua_State *L, int n) {
  lua_pushboolean(L, n >= 0);
  lua_insert(L, n >= 0 ? -(n + 1) : -2);
  return n >= 0 ? n + 1 : 2;
}

/* How a wrap function reports: the values, or the error raised again (a
   string error gets the caller's position, and a failed coroutine is
   closed so that its to-be-closed variables run). */
static int wrap_result(lua_State *L, lua_State *co, int n) {
  if (n >= 0) return n;
  int status = lua_status(co);
  if (status != LUA_OK && status != LUA_YIELD) {
#if LUA_VERSION_RELEASE_NUM >= 50406
    status = lua_closethread(co, L);
#else
    status = lua_resetthread(co);
#endif
    lua_xmove(co, L, 1);
  }
  if (status != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

static int resume_k(lua_State *L, int status, lua_KContext how);

/*
** Resumes co with the nargs values on top of L.  Leaves co's results (and
** returns their count) or an error value (and returns -1) on L -- unless co
** yielded for a wait of the task L runs: then L yields too, and resume_k
** goes on when the loop resumes the task.
*/
static int resume_step(lua_State *L, lua_State *co, int nargs, lua_KContext how) {
  if (!lua_checkstack(co, nargs)) {
    lua_pushliteral(L, "too many arguments to resume");
    return -1;
  }
  lua_xmove(L, co, nargs);
  csock_nest saved;
  int nested = loop_nest_enter(L, co, &saved);
  int nres;
  int status = lua_resume(co, L, nargs, &nres);
  if (nested) loop_nest_leave(&saved);
  if (status == LUA_YIELD && nested) {
    push_resumed(L, how);
    if (loop_nest_park(L)) return lua_yieldk(L, 0, how, resume_k);
  }
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_xmove(co, L, 1);
    return -1;
  }
  if (!lua_checkstack(L, nres + 1)) {
    lua_pop(co, nres);
    lua_pushliteral(L, "too many results to resume");
    return -1;
  }
  lua_xmove(co, L, nres);
  return nres;
}

static int finish(lua_State *L, lua_State *co, int n, lua_KContext how) {
  return how == BY_WRAP ? wrap_result(L, co, n) : resume_result(L, n);
}

/* The loop resumed the task: resume the parked coroutine where it waited. */
static int resume_k(lua_State *L, int status, lua_KContext how) {
  (void)status;
  lua_State *co = resumed_coroutine(L, how);
  push_resumed(L, how);
  loop_nest_unpark(L);
  lua_settop(L, how == BY_WRAP ? 0 : 1);
  return finish(L, co, resume_step(L, co, 0, how), how);
}

/* A coroutine parked in a wait belongs to its task until the loop resumes it. */
static int parked(lua_State *L, lua_KContext how) {
  push_resumed(L, how);
  return loop_nest_parked(L);
}

static int co_resume(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTHREAD); /* Lua 5.4's own message: "thread expected" */
  lua_State *co = lua_tothread(L, 1);
  if (parked(L, BY_RESUME)) {
    lua_pushliteral(L, "cannot resume non-suspended coroutine");
    return resume_result(L, -1);
  }
  return resume_result(L, resume_step(L, co, lua_gettop(L) - 1, BY_RESUME));
}

static int wrap_call(lua_State *L) {
  lua_State *co = resumed_coroutine(L, BY_WRAP);
  if (parked(L, BY_WRAP)) return luaL_error(L, "cannot resume non-suspended coroutine");
  return wrap_result(L, co, resume_step(L, co, lua_gettop(L), BY_WRAP));
}

/* coroutine.close: Lua's own (upvalue 1), except that a parked coroutine
   counts as running -- its task will resume it. */
static int co_close(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTHREAD);
  if (parked(L, BY_RESUME)) return luaL_error(L, "cannot close a running coroutine");
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, 1, LUA_MULTRET);
  return lua_gettop(L);
}

static int co_wrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, wrap_call, 1);
  return 1;
}

/* coroutine.running: Lua's own, and the loop learns that a task's
   coroutine was handed out (it is then never reused for another task). */
static int co_running(lua_State *L) {
  int ismain = lua_pushthread(L);
  lua_pushboolean(L, ismain);
  loop_note_running(L);
  return 2;
}

/*
** Puts resume, wrap, running and close into the coroutine library, unless the program has
** already replaced Lua's resume with a function of its own (a Lua
** function: then its coroutines block in a wait, as before).
*/
void coro_install(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "coroutine") == LUA_TTABLE) {
    lua_getfield(L, -1, "resume");
    int plain = lua_iscfunction(L, -1) && lua_tocfunction(L, -1) != co_resume;
    lua_pop(L, 1);
    if (plain) {
      lua_pushcfunction(L, co_resume);
      lua_setfield(L, -2, "resume");
      lua_pushcfunction(L, co_wrap);
      lua_setfield(L, -2, "wrap");
      lua_pushcfunction(L, co_running);
      lua_setfield(L, -2, "running");
      if (lua_getfield(L, -1, "close") == LUA_TFUNCTION) {
        lua_pushcclosure(L, co_close, 1);
        lua_setfield(L, -2, "close");
      } else {
        lua_pop(L, 1);
      }
    }
  }
  lua_pop(L, 2);
}
