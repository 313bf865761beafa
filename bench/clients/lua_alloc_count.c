/* lua_alloc_count.c - a Lua 5.4 host whose allocator counts the live blocks
 * by kind and size, to account for what a Lua object graph holds.
 *
 *   lua_alloc_count SCRIPT [ARGS...]
 *
 * Runs SCRIPT (arg as in lua5.4) with two globals: alloc_mark() remembers the
 * live blocks now; alloc_report(n) writes to stderr every (kind, size) whose
 * count changed by at least n/2 since the mark, per n, and the total bytes per
 * n.  The kind is what Lua tells a new block's allocator call: the type tag of
 * the object (7 userdata, 8 thread, 5 table, 4 and 20 strings, 6 and 38
 * closures, 9 upvalue, 10 prototype), or 0 for the rest (stacks, call
 * records, arrays, hash parts).  Sizes are Lua's, before any allocator
 * rounding.  Each block carries a 16-byte header.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  size_t kind, size;
} header;

#define MAX_CLASSES 4096
typedef struct {
  size_t kind, size;
  long live;
} class_count;

static class_count now[MAX_CLASSES], mark[MAX_CLASSES];
static int nclasses;

static void count(size_t kind, size_t size, long d) {
  for (int i = 0; i < nclasses; i++) {
    if (now[i].kind == kind && now[i].size == size) {
      now[i].live += d;
      return;
    }
  }
  if (nclasses == MAX_CLASSES) return;
  now[nclasses++] = (class_count){kind, size, d};
}

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  size_t kind = osize; /* a new block: osize is its object's type tag, or 0 */
  if (ptr != NULL) {
    header *h = (header *)ptr - 1;
    kind = h->kind;
    count(h->kind, h->size, -1);
    ptr = h;
  }
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  header *h = realloc(ptr, sizeof *h + nsize);
  if (h == NULL) return NULL;
  h->kind = kind;
  h->size = nsize;
  count(kind, nsize, 1);
  return h + 1;
}

static int alloc_mark(lua_State *L) {
  (void)L;
  memcpy(mark, now, sizeof now);
  return 0;
}

static int alloc_report(lua_State *L) {
  long n = (long)luaL_checkinteger(L, 1);
  long bytes = 0;
  for (int i = 0; i < nclasses; i++) {
    long d = now[i].live - mark[i].live; /* classes are only appended: same index, same class */
    if (2 * labs(d) < n) continue;
    fprintf(stderr, "kind %2zu size %5zu: %+6.2f per unit\n", now[i].kind, now[i].size,
            (double)d / (double)n);
    bytes += d * (long)now[i].size;
  }
  fprintf(stderr, "total %.1f bytes per unit\n", (double)bytes / (double)n);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: lua_alloc_count SCRIPT [ARGS...]\n");
    return 2;
  }
  lua_State *L = lua_newstate(counting_alloc, NULL);
  if (L == NULL) return 1;
  luaL_openlibs(L);
  lua_register(L, "alloc_mark", alloc_mark);
  lua_register(L, "alloc_report", alloc_report);
  lua_createtable(L, argc, 0);
  for (int i = 1; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  int status = luaL_dofile(L, argv[1]);
  if (status != LUA_OK) fprintf(stderr, "%s\n", lua_tostring(L, -1));
  lua_close(L);
  return status == LUA_OK ? 0 : 1;
}
