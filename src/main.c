/*
** main.c - the host executable `csock`, shaped like lua.c:
**   csock [options] [script [args]]
** The -l modules, -e chunks and the script all run, in the order given,
** inside one task of the loop, so a script can block and spawn freely.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "csock.h"
#include "lualib.h"

#ifndef CSOCK_INIT_LUA
#include "init_lua.h" /* the Lua modules as C strings (tools/embed_lua.sh) */
#endif

static const char *progname = "csock";

static void print_usage(FILE *out) {
  fprintf(out,
          "usage: %s [options] [script [args]]\n"
          "Available options are:\n"
          "  -e stat   execute string 'stat' (inside the loop)\n"
          "  -l mod    require library 'mod' into global 'mod'\n"
          "  -l g=mod  require library 'mod' into global 'g'\n"
          "  -w N      run N worker processes of the script (SO_REUSEPORT listeners)\n"
          "  -v        show version information\n"
          "  -h        show this help\n"
          "  -E        ignore environment variables\n"
          "  -W        turn warnings on\n"
          "  --        stop handling options\n"
          "  -         execute stdin and stop handling options\n",
          progname);
  fflush(out);
}

static void l_message(const char *msg) {
  fprintf(stderr, "%s: %s\n", progname, msg);
  fflush(stderr);
}

/* Reports a failure with the message on top of the stack. */
static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (msg == NULL) msg = "(error object is not a string)";
    l_message(msg);
    lua_pop(L, 1);
  }
  return status;
}

/* ---------------------------------------------------------------- options */

typedef struct options {
  int script; /* index in argv of the script; 0: none */
  int has_e, has_l, has_v, has_h, has_E, has_W;
  int workers;
  int stdin_script;
  const char *bad; /* the offending option, when the command line is wrong */
} options;

static int collect_args(int argc, char **argv, options *o) {
  memset(o, 0, sizeof *o);
  int i;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-') break;
    if (strcmp(a, "-") == 0) {
      o->stdin_script = 1;
      break;
    }
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    }
    switch (a[1]) {
      case 'v':
        if (a[2]) goto bad;
        o->has_v = 1;
        break;
      case 'h':
        if (a[2]) goto bad;
        o->has_h = 1;
        break;
      case 'E':
        if (a[2]) goto bad;
        o->has_E = 1;
        break;
      case 'W':
        if (a[2]) goto bad;
        o->has_W = 1;
        break;
      case 'e': o->has_e = 1; /* FALLTHROUGH */
      case 'l':
        if (a[1] == 'l') o->has_l = 1;
        if (a[2] == '\0' && (++i >= argc || argv[i][0] == '-')) goto bad;
        break;
      case 'w': {
        const char *n = a[2] ? a + 2 : (++i < argc ? argv[i] : NULL);
        char *end;
        if (n == NULL) goto bad;
        long w = strtol(n, &end, 10);
        if (*end || w < 1 || w > 1024) goto bad;
        o->workers = (int)w;
        break;
      }
      default: goto bad;
    }
  }
  o->script = i < argc ? i : 0;
  return 1;
bad:
  o->bad = i < argc ? argv[i] : argv[i - 1];
  return 0;
}

/* arg: script at 0, its arguments at 1.., the interpreter and options below 0. */
static void create_arg_table(lua_State *L, char **argv, int argc, int script) {
  int narg = argc - (script + 1);
  lua_createtable(L, narg, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

/* ---------------------------------------------------------------- steps */

/* A step is a table {fn, args...}; the main task runs them in order. */
static void add_step(lua_State *L, int steps, int nvalues) {
  lua_createtable(L, nvalues, 0);
  lua_insert(L, -nvalues - 1);
  for (int i = nvalues; i >= 1; i--) lua_rawseti(L, -1 - i, i);
  lua_rawseti(L, steps, (lua_Integer)luaL_len(L, steps) + 1);
}

static int steps_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  for (lua_Integer i = (lua_Integer)ctx + 1;; i++) {
    if (lua_rawgeti(L, lua_upvalueindex(1), i) == LUA_TNIL) return 0;
    int tbl = lua_gettop(L);
    int n = (int)luaL_len(L, tbl);
    luaL_checkstack(L, n, "too many arguments");
    for (int j = 1; j <= n; j++) lua_rawgeti(L, tbl, j);
    lua_remove(L, tbl);
    lua_callk(L, n - 1, 0, (lua_KContext)i, steps_k);
    lua_settop(L, 0);
  }
}

static int run_steps(lua_State *L) { return steps_k(L, LUA_OK, 0); }

/*
** -l [g=]mod: require mod and store it in the global g (default mod).
** Written in Lua, as require's own steps (package.loaded, the searchers,
** the loader, the same "module not found" message), because require is a C
** function that calls the loader without a continuation: a module body that
** waited under it would block the thread instead of suspending its task.
*/
static const char library_step_lua[] =
    "local spec = ...\n"
    "local global, name = spec:match('^(.-)=(.*)$')\n"
    "if not global then global, name = spec, spec end\n"
    "local value = package.loaded[name]\n"
    "if value == nil then\n"
    "  local misses = {}\n"
    "  for _, search in ipairs(package.searchers) do\n"
    "    local loader, data = search(name)\n"
    "    if type(loader) == 'function' then\n"
    "      local result = loader(name, data)\n"
    "      if result ~= nil then package.loaded[name] = result end\n"
    "      if package.loaded[name] == nil then package.loaded[name] = true end\n"
    "      value = package.loaded[name]\n"
    "      break\n"
    "    elseif type(loader) == 'string' then\n"
    "      misses[#misses + 1] = '\\n\\t' .. loader\n"
    "    end\n"
    "  end\n"
    "  if value == nil then\n"
    "    error(string.format(\"module '%s' not found:%s\", name, table.concat(misses)), 0)\n"
    "  end\n"
    "end\n"
    "_G[global] = value\n";

/* Builds the steps table from argv; reports load errors and returns 0. */
static int build_steps(lua_State *L, int argc, char **argv, const options *o) {
  lua_newtable(L);
  int steps = lua_gettop(L);
  int last = o->script ? o->script : argc;
  for (int i = 1; i < last; i++) {
    const char *a = argv[i];
    if (a[0] != '-' || (a[1] != 'e' && a[1] != 'l')) continue;
    const char *extra = a[2] ? a + 2 : argv[++i];
    if (a[1] == 'e') {
      if (report(L, luaL_loadbuffer(L, extra, strlen(extra), "=(command line)")) != LUA_OK)
        return 0;
      add_step(L, steps, 1);
    } else {
      if (report(L, luaL_loadbuffer(L, library_step_lua, sizeof library_step_lua - 1, "=-l")) !=
          LUA_OK)
        return 0;
      lua_pushstring(L, extra);
      add_step(L, steps, 2);
    }
  }
  if (o->script || o->stdin_script || (!o->has_e && !o->has_v && !isatty(0))) {
    const char *fname = o->script ? argv[o->script] : NULL;
    if (fname && strcmp(fname, "-") == 0) fname = NULL;
    if (report(L, luaL_loadfile(L, fname)) != LUA_OK) return 0;
    int first = o->script ? o->script + 1 : argc;
    int n = argc - first;
    luaL_checkstack(L, n, "too many arguments");
    for (int i = first; i < argc; i++) lua_pushstring(L, argv[i]);
    add_step(L, steps, n + 1);
  }
  return 1;
}

/* ---------------------------------------------------------------- main */

/* package.preload loader of an embedded module: compiled only when required. */
static int load_embedded(lua_State *L) {
  int i = (int)lua_tointeger(L, lua_upvalueindex(1));
  const char *src = csock_lua_modules[i].source;
  if (luaL_loadbuffer(L, src, strlen(src), csock_lua_modules[i].chunk) != LUA_OK)
    return lua_error(L);
  lua_insert(L, 1); /* the chunk gets require's arguments: name, ":preload:" */
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

static int preload_core(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_csock_core);
  lua_setfield(L, -2, "csock.core");
  if (luaL_loadbuffer(L, csock_init_lua, strlen(csock_init_lua), "=csock") != LUA_OK) return 0;
  lua_setfield(L, -2, "csock");
  /* csock.http, csock.socket, ...: found from any directory, like the core */
  for (int i = 0; csock_lua_modules[i].name; i++) {
    lua_pushinteger(L, i);
    lua_pushcclosure(L, load_embedded, 1);
    lua_setfield(L, -2, csock_lua_modules[i].name);
  }
  lua_pop(L, 1);
  return 1;
}

static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Runs everything as the first task of csock.run; reports an error. */
static int run_main(lua_State *L) {
  lua_pushcfunction(L, msghandler);
  int h = lua_gettop(L);
  lua_pushcfunction(L, loop_run);
  lua_pushvalue(L, -3); /* the steps table */
  lua_pushcclosure(L, run_steps, 1);
  int status = lua_pcall(L, 1, 0, h);
  if (status != LUA_OK) {
    const char *tb = loop_last_traceback(L);
    if (tb != NULL) { /* the main task failed: its own traceback is better */
      lua_pop(L, 1);
      lua_pushstring(L, tb);
    }
  }
  return report(L, status);
}

typedef struct host {
  int argc;
  char **argv;
  options opts;
  int ok;
} host;

static int pmain(lua_State *L) {
  host *hp = (host *)lua_touserdata(L, 1);
  int argc = hp->argc;
  char **argv = hp->argv;
  const options *o = &hp->opts;
  if (o->has_E) {
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  luaL_openlibs(L);
  if (!preload_core(L)) return lua_error(L);
  create_arg_table(L, argv, argc, o->script ? o->script : 0);
  if (o->has_W) lua_warning(L, "@on", 0);
  if (o->has_v) printf("%s\n", CSOCK_VERSION);
  if (o->has_h) print_usage(stdout);
  fflush(stdout);
  /* like lua5.4: -v alone only prints the version, -v with a script or
     -e goes on to run them; -h prints the usage and stops */
  if (o->has_h || (o->has_v && !o->script && !o->stdin_script && !o->has_e && !o->has_l)) {
    hp->ok = 1;
    return 0;
  }
  if (!o->script && !o->stdin_script && !o->has_e && isatty(0)) {
    printf("%s\n", CSOCK_VERSION);
    print_usage(stdout);
    hp->ok = 1;
    return 0;
  }
  if (luaL_dostring(L,
                    "local csock = require 'csock'\n"
                    "_G.csock = csock -- scripts may also require it: the same table\n"
                    "csock.signal(csock.SIGQUIT, function()\n"
                    "  io.stderr:write(csock.dump()) io.stderr:flush()\n"
                    "end)") != LUA_OK)
    return lua_error(L);
  signal_mark_passive(L, SIGQUIT); /* a dump does not end a deadlock */
  if (!build_steps(L, argc, argv, o)) return 0;
  hp->ok = run_main(L) == LUA_OK;
  return 0;
}

int main(int argc, char **argv) {
  host h;
  h.argc = argc;
  h.argv = argv;
  h.ok = 0;
  if (!collect_args(argc, argv, &h.opts)) {
    fprintf(stderr, "%s: unrecognized option or missing argument '%s'\n", progname, h.opts.bad);
    print_usage(stderr);
    return EXIT_FAILURE;
  }
  signal(SIGPIPE, SIG_IGN); /* a closed peer is an EPIPE result, not death */
  if (h.opts.workers > 1) {
    int r = workers_supervise(h.opts.workers);
    if (r >= 0) return r; /* the master is done; workers go on below */
  }
  lua_State *L = alloc_newstate();
  if (L == NULL) {
    l_message("cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  lua_pushcfunction(L, pmain);
  lua_pushlightuserdata(L, &h);
  int status = lua_pcall(L, 1, 0, 0);
  report(L, status);
  alloc_close(L);
  return status == LUA_OK && h.ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
