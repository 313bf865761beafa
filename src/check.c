/*
** check.c - the ground floor every other file stands on: argument checks
** that name the method, the failure results of the luaL_fileresult
** convention, and the monotonic clock.  It calls no other csock file.
*/
#include <errno.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "csock.h"

double csock_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Pushes nil, strerror(err), err: the luaL_fileresult convention. */
int csock_failure(lua_State *L, int err) {
  if (err < 0) err = -err;
  lua_pushnil(L);
  lua_pushstring(L, err == ETIMEDOUT ? "timeout" : strerror(err));
  lua_pushinteger(L, err);
  return 3;
}

int csock_failmsg(lua_State *L, const char *msg, int err) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  lua_pushinteger(L, err);
  return 3;
}

/* The string key under which the table on top holds the value at fn, or NULL. */
static const char *key_of(lua_State *L, int fn) {
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_rawequal(L, -1, fn)) return lua_tostring(L, -2);
    lua_pop(L, 1);
  }
  return NULL;
}

/*
** The name of the running function among the methods of sockets, tasks and
** loops, or NULL: a method called without a name at the call site
** (pcall(s.recv, s), or through a local of another name) is still named.
** Leaves values on the stack; only used on the way to an error.
*/
static const char *method_name(lua_State *L, int fn) {
  static const char *const kinds[] = {CSOCK_SOCKET, CSOCK_TASK, CSOCK_LOOP, CSOCK_COND};
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    if (luaL_getmetatable(L, kinds[k]) == LUA_TTABLE &&
        lua_getfield(L, -1, "__index") == LUA_TTABLE) {
      const char *name = key_of(L, fn);
      if (name) return name;
    }
    lua_settop(L, fn);
  }
  return NULL;
}

/*
** "csock.<name>" for a module function called without a name at the call
** site (pcall(csock.sleep, -1)), or NULL.  Lua's own fallback searches
** package.loaded, where the function is both csock.x and csock.core.x, and
** names whichever the table's order gives first: the message would change
** from run to run.  Leaves values on the stack; only used on the way to an error.
*/
static const char *module_name(lua_State *L, int fn) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "csock") != LUA_TTABLE) return NULL;
  const char *name = key_of(L, fn);
  return name ? lua_pushfstring(L, "csock.%s", name) : NULL;
}

/*
** Argument checks.  Lua's luaL_argerror renumbers the arguments of a
** method call (self becomes "bad self", the next argument #1); csock's
** messages count self as argument #1 in every call form, as SPEC.md shows
** ("bad argument #1 to 'recv' (socket is closed)"), so methods check their
** arguments through these instead.
*/
int csock_argerror(lua_State *L, int arg, const char *extramsg) {
  lua_Debug ar;
  if (!lua_getstack(L, 0, &ar)) return luaL_argerror(L, arg, extramsg);
  lua_getinfo(L, "n", &ar);
  const char *name = ar.name != NULL && strcmp(ar.namewhat, "method") == 0 ? ar.name : NULL;
  if (name == NULL) {
    lua_getinfo(L, "f", &ar); /* the running function, compared with the tables' values */
    int fn = lua_gettop(L);
    name = method_name(L, fn);
    if (name == NULL && ar.name == NULL) name = module_name(L, fn);
  }
  if (name == NULL) return luaL_argerror(L, arg, extramsg); /* same numbering either way */
  return luaL_error(L, "bad argument #%d to '%s' (%s)", arg, name, extramsg);
}

int csock_typeerror(lua_State *L, int arg, const char *tname) {
  const char *got;
  if (luaL_getmetafield(L, arg, "__name") == LUA_TSTRING)
    got = lua_tostring(L, -1);
  else if (lua_type(L, arg) == LUA_TLIGHTUSERDATA)
    got = "light userdata";
  else
    got = luaL_typename(L, arg);
  return csock_argerror(L, arg, lua_pushfstring(L, "%s expected, got %s", tname, got));
}

void csock_checktype(lua_State *L, int arg, int t) {
  if (lua_type(L, arg) != t) csock_typeerror(L, arg, lua_typename(L, t));
}

void csock_checkany(lua_State *L, int arg) {
  if (lua_type(L, arg) == LUA_TNONE) csock_argerror(L, arg, "value expected");
}

lua_Integer csock_checkinteger(lua_State *L, int arg) {
  int isnum;
  lua_Integer v = lua_tointegerx(L, arg, &isnum);
  if (!isnum) {
    if (lua_isnumber(L, arg))
      csock_argerror(L, arg, "number has no integer representation");
    else
      csock_typeerror(L, arg, "number");
  }
  return v;
}

lua_Integer csock_optinteger(lua_State *L, int arg, lua_Integer def) {
  return lua_isnoneornil(L, arg) ? def : csock_checkinteger(L, arg);
}

lua_Number csock_checknumber(lua_State *L, int arg) {
  int isnum;
  lua_Number v = lua_tonumberx(L, arg, &isnum);
  if (!isnum) csock_typeerror(L, arg, "number");
  return v;
}

/* A duration in seconds at arg, value t: not NaN, not negative ("<what> must ..."). */
void csock_checkduration(lua_State *L, int arg, lua_Number t, const char *what) {
  csock_argcheck(L, !isnan(t), arg, lua_pushfstring(L, "%s must be a number, not NaN", what));
  csock_argcheck(L, t >= 0, arg, lua_pushfstring(L, "%s must not be negative", what));
}

const char *csock_checklstring(lua_State *L, int arg, size_t *len) {
  const char *s = lua_tolstring(L, arg, len);
  if (s == NULL) csock_typeerror(L, arg, "string");
  return s;
}

int csock_checkoption(lua_State *L, int arg, const char *const lst[]) {
  const char *name = csock_checklstring(L, arg, NULL);
  for (int i = 0; lst[i]; i++)
    if (strcmp(lst[i], name) == 0) return i;
  return csock_argerror(L, arg, lua_pushfstring(L, "invalid option '%s'", name));
}

void *csock_checkudata(lua_State *L, int arg, const char *tname) {
  void *p = luaL_testudata(L, arg, tname);
  if (p == NULL) csock_typeerror(L, arg, tname);
  return p;
}
