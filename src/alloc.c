/*
** alloc.c - the host's Lua memory: an allocator with size-class pools for
** small blocks, and the collector's pace while the heap is small.
**
** Lua tells its allocator the size of every block it frees or resizes, so
** small blocks need no header: each size class (a multiple of 16 bytes up
** to ALLOC_SMALL) keeps a list of free blocks, and new blocks are cut from
** 64 KiB chunks.  A server that makes a task, two userdata and an address
** table per connection then allocates and frees in a few instructions
** instead of going through malloc's bins, a large share of the user time
** of a connection that makes one request.  Larger blocks go to
** malloc.  Freed small blocks stay in their pool for the next connection;
** the chunks go back only when the state is closed.
**
** Builds with AddressSanitizer use plain realloc/free, so that ASan checks
** every Lua object on its own.
**
** Pacing: Lua starts a collection when the heap has doubled since the last
** one (pause 200).  A server whose live heap is small and that turns over
** large strings (echo: a 64 KiB string per chunk) then runs a whole cycle
** every chunk or two, each one marking everything live.  So a small heap may
** grow up to about ten times before a cycle (pause 1020, the largest Lua
** keeps), but by no more than HEADROOM_KB: the pause is the one that leaves
** the heap that much room, between 1020 and Lua's 200 (big heaps keep Lua's
** pace and memory use): an echo server's collection work per chunk falls
** with the longer pause, since each cycle marks the same small live heap.
** The bound matters because garbage with finalizers (every socket has __gc) survives
** the cycle that finds it: with a plain pause of 300 or 400, a loop that
** opens and closes sockets grew its heap without end (each cycle's survivors
** raised the next threshold); room of at most HEADROOM_KB bounds what can
** survive.  A script that sets its own pause
** (collectgarbage("setpause"/"incremental")) is left alone from then on.
**
** Adoption: a received chunk becomes a Lua string, and Lua strings are
** immutable, so lua_pushlstring would copy every byte recv(2) just wrote
** (for an echo server, the largest user-space cost after the collector).
** Instead recv writes into a block from string_space, and when
** Lua then asks this allocator for the string's memory, it is handed that
** very block: lua_pushlstring's copy has source and destination the same
** and does nothing.  Where a string's bytes start in its block is measured
** once at start (measure_string_header), not assumed; if Lua allocates
** anything else first, the block is simply not taken and the bytes are
** copied as usual.  Off under valgrind, whose memcheck reports every
** copy onto itself.
*/
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
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

/* A block being filled with the bytes of a string Lua is about to make. */
typedef struct adoption {
  char *block;      /* from malloc; the bytes go at block + header */
  size_t room;      /* bytes that fit there */
  size_t header;    /* where a long string's bytes start in its block; 0: adoption off */
  size_t handover;  /* answer Lua's next string allocation with block if of this size */
  size_t seen_size; /* the size of that allocation, when handover is MEASURE */
} adoption;

#define MEASURE SIZE_MAX /* handover: note the size only (measure_string_header) */

/* What lauxlib's default state does besides allocating: warnings and panics. */
typedef struct host_state {
  pools pools;
  adoption adopt;
  int warn_on;   /* warn("@on") was called */
  int warn_cont; /* the previous piece said a continuation follows */
  int pause;     /* the collector pause the host set last; 0: the script set its own */
} host_state;

#define HEADROOM_KB 1024
#define PAUSE_SMALL 1020  /* Lua keeps the pause in a byte, as pause / 4 */
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

/* A block of n bytes from its pool or the newest chunk's tail; NULL when both are used up. */
static inline void *pool_take(pools *p, size_t n) {
  size_t c = class_of(n), size = (c + 1) * ALLOC_GRAIN;
  free_block *b = p->free[c];
  if (b != NULL) {
    p->free[c] = b->next;
    return b;
  }
  if ((size_t)(p->bump_end - p->bump) < size) return NULL;
  void *block = p->bump;
  p->bump += size;
  return block;
}

static void *pool_get(pools *p, size_t n) {
  void *block = pool_take(p, n);
  if (block != NULL || !pool_grow(p)) return block;
  return pool_take(p, n);
}

static void pool_release(pools *p, void *block, size_t n) {
  if (n <= ALLOC_SMALL)
    pool_put(p, block, n);
  else
    free(block);
}

/*
** Called first by both allocators: the filled block, if this is the new
** string a handover waits for and its size is the one expected; else NULL
** (allocate as usual).  When measuring, notes the size instead.  When ptr
** is NULL, osize is the kind of object Lua is making.
*/
static void *adopt_take(adoption *a, void *ptr, size_t osize, size_t nsize) {
  if (a->handover == 0 || ptr != NULL || osize != LUA_TSTRING) return NULL;
  if (a->handover == MEASURE) {
    a->seen_size = nsize;
    return NULL;
  }
  if (nsize != a->handover) return NULL;
  void *block = a->block;
  a->block = NULL;
  a->room = a->handover = 0;
  return block;
}

/* pool_alloc's general case: adoption, resizes, large blocks, a pool to refill. */
static __attribute__((noinline)) void *pool_alloc_slow(host_state *h, void *ptr, size_t osize,
                                                       size_t nsize) {
  pools *p = &h->pools;
  void *adopted = adopt_take(&h->adopt, ptr, osize, nsize);
  if (adopted != NULL) return adopted;
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

/*
** lua_Alloc: osize is the block's size when ptr is not NULL.  Most calls
** make or free a small block while no adoption waits: those are answered
** here, from the pools' free lists or the newest chunk's tail (where most
** come from between two cycles), without the general case's register
** saves: a connection's objects and a request's strings all come this way.
*/
static void *pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  host_state *h = (host_state *)ud;
  pools *p = &h->pools;
  if (h->adopt.handover == 0) {
    if (ptr == NULL && nsize - 1 < ALLOC_SMALL) { /* nsize in [1, ALLOC_SMALL] */
      void *block = pool_take(p, nsize);
      if (block != NULL) return block;
    } else if (nsize == 0 && osize <= ALLOC_SMALL) { /* ptr NULL: an empty array part */
      if (ptr != NULL) pool_put(p, ptr, osize);
      return NULL;
    }
  }
  return pool_alloc_slow(h, ptr, osize, nsize);
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
  void *adopted = adopt_take(&((host_state *)ud)->adopt, ptr, osize, nsize);
  if (adopted != NULL) return adopted;
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

/* The pause for a heap of kb KiB: room for HEADROOM_KB more, within [200, 1020]; a multiple of 4,
 * as Lua keeps it. */
static int pause_for(int kb) {
  long pause = 100L * (kb + HEADROOM_KB) / (kb > 0 ? kb : 1);
  if (pause > PAUSE_SMALL) pause = PAUSE_SMALL;
  if (pause < PAUSE_DEFAULT) pause = PAUSE_DEFAULT;
  return (int)pause / 4 * 4;
}

/* Once per loop turn (loop_turn_hook): the pause that fits the heap's size now. */
static void pace_collector(lua_State *L) {
  host_state *h = the_host;
  if (h == NULL || h->pause == 0) return;
  int want = pause_for(lua_gc(L, LUA_GCCOUNT));
  if (want == h->pause) return;
  int was = lua_gc(L, LUA_GCSETPAUSE, want);
  if (was != h->pause) { /* the script chose its own: give it back, stop pacing */
    lua_gc(L, LUA_GCSETPAUSE, was);
    h->pause = 0;
    return;
  }
  h->pause = want;
}

/* ---------------------------------------------------------------- adoption */

#define ADOPT_MIN_LEN (4 * 1024) /* shorter strings are copied: the copy costs little */
_Static_assert(ADOPT_MIN_LEN > ALLOC_SMALL, "handed-over blocks are malloc's, never a pool's");

/* Room for n bytes of a string about to be made (csock_string_space), or NULL to copy. */
static char *string_space(size_t n) {
  adoption *a = the_host ? &the_host->adopt : NULL;
  if (a == NULL || a->header == 0 || n < ADOPT_MIN_LEN) return NULL;
  a->handover = 0; /* one left armed by a push that raised must not outlive its block */
  if (a->room < n) {
    free(a->block);
    a->block = (char *)malloc(a->header + n + 1);
    a->room = a->block ? n : 0;
    if (a->block == NULL) return NULL;
  }
  return a->block + a->header;
}

/*
** Pushes the len bytes written at p, the block from string_space, as a Lua
** string.  The block is handed over when the string fills a good part of it
** (then the copy saved is large); a short read, or bytes from anywhere else,
** are copied as they would be anyway, and the block stays for the next read.
** ADOPT_MIN_LEN also keeps handed-over blocks above ALLOC_SMALL: the pools
** take only their own.
*/
static void string_push(lua_State *L, const char *p, size_t len) {
  adoption *a = &the_host->adopt;
  size_t size = a->header + len + 1;
  if (p != a->block + a->header || len < ADOPT_MIN_LEN || len < a->room / 4) {
    lua_pushlstring(L, p, len);
    return;
  }
  if (a->room - len >= ALLOC_SMALL) { /* give the unused tail back (in place in glibc) */
    char *b = (char *)realloc(a->block, size);
    if (b != NULL) {
      a->block = b;
      a->room = len;
    }
  }
  a->handover = size;
  lua_pushlstring(L, a->block + a->header, len);
  a->handover = 0; /* adopt_take cleared it, unless Lua allocated otherwise */
}

/*
** Where a long string's bytes start in its block: the size Lua asks for a
** string of n bytes, less n + 1.  Then one adoption is checked end to end;
** adoption stays off if anything is not as measured.
*/
static void measure_string_header(lua_State *L, adoption *a) {
  enum { PROBE = ADOPT_MIN_LEN };
  static const char probe[PROBE];
  a->handover = MEASURE;
  lua_pushlstring(L, probe, PROBE);
  a->handover = 0;
  lua_pop(L, 1);
  if (a->seen_size <= PROBE + 1 || a->seen_size > PROBE + 1 + 256) return;
  a->header = a->seen_size - PROBE - 1;
  char *p = string_space(PROBE);
  if (p == NULL) return;
  memset(p, 'x', PROBE);
  const char *block = a->block;
  string_push(L, p, PROBE);
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  if (s != block + a->header || len != PROBE || s[0] != 'x' || s[PROBE - 1] != 'x' || s[PROBE])
    a->header = 0;
  lua_pop(L, 1);
}

static int under_valgrind(void) {
#ifdef RUNNING_ON_VALGRIND
  if (RUNNING_ON_VALGRIND) return 1;
#endif
  const char *preload = getenv("LD_PRELOAD");
  return preload != NULL && strstr(preload, "vgpreload") != NULL;
}

/* ---------------------------------------------------------------- the state */

/*
** glibc gives memory at the top of its heap back to the system once 128 KiB
** of it is free.  A cycle of the collector frees up to HEADROOM_KB of
** garbage at once (an echo server's strings), the heap's top is trimmed,
** and the next strings fault their pages in again, zeroed: a page fault per
** few pages echoed, and more system time than the collector saves.  The host
** keeps TRIM_KEEP_KB free at the top instead.  Setting that turns off glibc's
** sliding mmap threshold, so blocks up to MMAP_FROM_KB come from the heap as
** they would once glibc had seen such a block freed.
*/
#define TRIM_KEEP_KB (8 * 1024)
#define MMAP_FROM_KB (4 * 1024)

static void keep_heap_top(void) {
#if defined(M_TRIM_THRESHOLD) && defined(M_MMAP_THRESHOLD)
  mallopt(M_TRIM_THRESHOLD, TRIM_KEEP_KB * 1024);
  mallopt(M_MMAP_THRESHOLD, MMAP_FROM_KB * 1024);
#endif
}

lua_State *alloc_newstate(void) {
  keep_heap_top();
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
  loop_turn_hook = pace_collector;
  if (!under_valgrind()) measure_string_header(L, &h->adopt);
  if (h->adopt.header != 0) {
    csock_string_space = string_space;
    csock_string_push = string_push;
  }
  return L;
}

void alloc_close(lua_State *L) {
  host_state *h = the_host;
  loop_turn_hook = NULL;
  csock_string_space = NULL;
  csock_string_push = NULL;
  lua_close(L);
  free(h->adopt.block);
  pools_free(&h->pools);
  free(h);
  the_host = NULL;
}
