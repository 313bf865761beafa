/*
** alloc.c - the host's Lua memory: an allocator with size-class pools for
** small blocks, and the collector's pace while the heap is small.
**
** Lua tells its allocator the size of every block it frees or resizes, so
** small blocks need no header: each size class (a multiple of 16 bytes up
** to ALLOC_SMALL) keeps a list of free blocks, and new blocks are cut from
** 64 KiB chunks.  A server that makes a task, two userdata and an address
** table per connection then allocates and frees in a few instructions
** instead of going through malloc's bins (measured: a sixth of the user
** time of a connection that makes one request).  Larger blocks go to
** malloc.  Freed small blocks stay in their pool for the next connection;
** the chunks go back only when the state is closed.
**
** Builds with AddressSanitizer use plain realloc/free, so that ASan checks
** every Lua object on its own.
**
** Pacing: Lua starts a collection when the heap has doubled since the last
** one (pause 200).  A server whose live heap is a few hundred KiB and that
** turns over large strings (echo: a 64 KiB string per chunk) then runs a
** whole cycle every few chunks, each one marking everything live -- 9 % of
** the CPU of the echo benchmark, for a heap of well under a megabyte.  So
** while the heap is under SMALL_HEAP_KB the host waits for it to grow four
** times (pause 400), like a minimum heap size; above that Lua's default
** applies, so big servers keep their memory use.  A script that sets its own
** pause (collectgarbage("setpause"/"incremental")) is left alone from then on.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csock.h"

#if defined(__SANITIZE_ADDRESS__)
#define ALLOC_POOLS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ALLOC_POOLS 0
#endif
#endif
#ifndef ALLOC_POOLS
#define ALLOC_POOLS 1
#endif

#define ALLOC_GRAIN 16 /* block sizes are multiples of this; also the alignment */
#define ALLOC_SMALL 1024
#define ALLOC_CLASSES (ALLOC_SMALL / ALLOC_GRAIN)
#define ALLOC_CHUNK (64 * 1024)

typedef struct free_block {
  struct free_block *next;
} free_block;

/* The head of a chunk; its blocks start ALLOC_GRAIN bytes in, to stay aligned. */
typedef struct chunk_head {
  struct chunk_head *next;
} chunk_head;
_Static_assert(sizeof(chunk_head) <= ALLOC_GRAIN, "chunk head fits in one grain");

typedef struct pools {
  free_block *free[ALLOC_CLASSES]; /* class c holds blocks of (c + 1) * ALLOC_GRAIN bytes */
  char *bump, *bump_end;           /* the unused tail of the newest chunk */
  chunk_head *chunks;
} pools;

/* What lauxlib's default state does besides allocating: warnings and panics. */
typedef struct host_state {
  pools pools;
  int warn_on;   /* warn("@on") was called */
  int warn_cont; /* the previous piece said a continuation follows */
  int pause;     /* the collector pause the host set last; 0: the script set its own */
} host_state;

#define SMALL_HEAP_KB (8 * 1024)
#define PAUSE_SMALL 400
#define PAUSE_DEFAULT 200 /* Lua's LUAI_GCPAUSE */

static size_t class_of(size_t n) { return (n - 1) / ALLOC_GRAIN; }

static void pool_put(pools *p, void *block, size_t n) {
  free_block *b = (free_block *)block;
  size_t c = class_of(n);
  b->next = p->free[c];
  p->free[c] = b;
}

/* Starts a new chunk; what is left of the old one goes to the pool that fits it. */
static int pool_grow(pools *p) {
  chunk_head *k = (chunk_head *)malloc(ALLOC_CHUNK);
  if (k == NULL) return 0;
  size_t rest = (size_t)(p->bump_end - p->bump);
  if (rest >= ALLOC_GRAIN) pool_put(p, p->bump, rest);
  k->next = p->chunks;
  p->chunks = k;
  p->bump = (char *)k + ALLOC_GRAIN;
  p->bump_end = (char *)k + ALLOC_CHUNK;
  return 1;
}

static void *pool_get(pools *p, size_t n) {
  size_t c = class_of(n);
  free_block *b = p->free[c];
  if (b != NULL) {
    p->free[c] = b->next;
    return b;
  }
  size_t size = (c + 1) * ALLOC_GRAIN;
  if ((size_t)(p->bump_end - p->bump) < size && !pool_grow(p)) return NULL;
  void *block = p->bump;
  p->bump += size;
  return block;
}

static void pool_release(pools *p, void *block, size_t n) {
  if (n <= ALLOC_SMALL)
    pool_put(p, block, n);
  else
    free(block);
}

/* lua_Alloc: osize is the block's size when ptr is not NULL. */
static void *pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  pools *p = &((host_state *)ud)->pools;
  if (ptr == NULL) osize = 0; /* then it tells the kind of object, not a size */
  if (nsize == 0) {
    if (ptr != NULL) pool_release(p, ptr, osize);
    return NULL;
  }
  if (osize > ALLOC_SMALL && nsize > ALLOC_SMALL) return realloc(ptr, nsize);
  if (osize != 0 && osize <= ALLOC_SMALL && nsize <= ALLOC_SMALL &&
      class_of(osize) == class_of(nsize))
    return ptr;
  void *block = nsize <= ALLOC_SMALL ? pool_get(p, nsize) : malloc(nsize);
  if (block == NULL) return NULL; /* Lua keeps ptr as it was */
  if (ptr != NULL) {
    memcpy(block, ptr, osize < nsize ? osize : nsize);
    pool_release(p, ptr, osize);
  }
  return block;
}

static void pools_free(pools *p) {
  while (p->chunks) {
    chunk_head *k = p->chunks;
    p->chunks = k->next;
    free(k);
  }
  memset(p, 0, sizeof *p);
}

static void *system_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

static int host_panic(lua_State *L) {
  const char *msg =
      lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "error object is not a string";
  fprintf(stderr, "PANIC: unprotected error in call to Lua API (%s)\n", msg);
  fflush(stderr);
  return 0; /* Lua aborts */
}

/* Warnings as lua.c shows them: off until "@on", pieces joined until the last. */
static void host_warn(void *ud, const char *msg, int tocont) {
  host_state *h = (host_state *)ud;
  if (!h->warn_cont && *msg == '@') { /* a control message */
    if (strcmp(msg, "@on") == 0) h->warn_on = 1;
    if (strcmp(msg, "@off") == 0) h->warn_on = 0;
    return;
  }
  if (h->warn_on) {
    if (!h->warn_cont) fputs("Lua warning: ", stderr);
    fputs(msg, stderr);
    if (!tocont) fputc('\n', stderr);
    fflush(stderr);
  }
  h->warn_cont = tocont;
}

/* Kept reachable for os.exit(code, true), which closes the state and exits
   without coming back to alloc_close. */
static host_state *the_host;

/* Once per loop turn (csock_turn_hook): the pause that fits the heap's size now. */
static void pace_collector(lua_State *L) {
  host_state *h = the_host;
  if (h == NULL || h->pause == 0) return;
  int want = lua_gc(L, LUA_GCCOUNT) < SMALL_HEAP_KB ? PAUSE_SMALL : PAUSE_DEFAULT;
  if (want == h->pause) return;
  int was = lua_gc(L, LUA_GCSETPAUSE, want);
  if (was != h->pause) { /* the script chose its own: give it back, stop pacing */
    lua_gc(L, LUA_GCSETPAUSE, was);
    h->pause = 0;
    return;
  }
  h->pause = want;
}

lua_State *alloc_newstate(void) {
  host_state *h = (host_state *)calloc(1, sizeof *h);
  if (h == NULL) return NULL;
  the_host = h;
  h->pause = PAUSE_DEFAULT;
  lua_State *L = lua_newstate(ALLOC_POOLS ? pool_alloc : system_alloc, h);
  if (L == NULL) {
    free(h);
    the_host = NULL;
    return NULL;
  }
  lua_atpanic(L, host_panic);
  lua_setwarnf(L, host_warn, h);
  csock_turn_hook = pace_collector;
  return L;
}

void alloc_close(lua_State *L) {
  host_state *h = the_host;
  csock_turn_hook = NULL;
  lua_close(L);
  pools_free(&h->pools);
  free(h);
  the_host = NULL;
}
