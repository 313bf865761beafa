/*
** buf.c - the read buffer of a socket.
** Input is buffered so that read("l") can split lines and recv/read share
** every byte; output is not (write hands the caller's strings to the
** kernel directly).  A buffer that empties goes back to a small pool, so an
** idle connection holds no buffer memory and a busy one reuses the same
** block without calling malloc per request.  A recv that goes straight to
** the kernel reads into a scratch block, or, in the host, into the memory
** of the string it will return (buf_string_space; alloc.c "Adoption").
*/
#include <stdlib.h>
#include <string.h>

#include "csock.h"

#define BUF_CHUNK (16 * 1024)
#define BUF_POOL_MAX 64
#define BUF_SCRATCH (64 * 1024)

static _Thread_local char *pool[BUF_POOL_MAX];
static _Thread_local int pooled;
static _Thread_local char scratch[BUF_SCRATCH];

/* A per-thread block for reads whose bytes are copied out at once. */
char *buf_scratch(size_t *size) {
  *size = sizeof scratch;
  return scratch;
}

char *(*csock_string_space)(size_t n);
void (*csock_string_push)(lua_State *L, const char *p, size_t len);

/*
** Where to read up to `want` bytes that will be pushed as one string with
** buf_push_string: a block the host's allocator can give to Lua as that
** string (no copy; the host decides which reads are worth it), or the
** scratch block.  *room: how many bytes fit.
*/
char *buf_string_space(size_t want, size_t *room) {
  if (want > BUF_SCRATCH) want = BUF_SCRATCH; /* one read is at most what scratch holds */
  char *p = csock_string_space != NULL ? csock_string_space(want) : NULL;
  if (p == NULL) return buf_scratch(room);
  *room = want;
  return p;
}

/* The host's push copies what is not its block, as lua_pushlstring does. */
void buf_push_string(lua_State *L, const char *p, size_t len) {
  if (csock_string_push != NULL)
    csock_string_push(L, p, len);
  else
    lua_pushlstring(L, p, len);
}

size_t buf_len(const csock_buf *b) { return b->tail - b->head; }

const char *buf_data(const csock_buf *b) { return b->data ? b->data + b->head : ""; }

static void buf_release(csock_buf *b) {
  if (b->data == NULL) return;
  if (b->cap == BUF_CHUNK && pooled < BUF_POOL_MAX)
    pool[pooled++] = b->data;
  else
    free(b->data);
  b->data = NULL;
  b->cap = b->head = b->tail = b->scanned = 0;
}

void buf_consume(csock_buf *b, size_t n) {
  if (b->data == NULL) return; /* freed meanwhile (the socket closed): nothing to take */
  b->head += n;
  b->scanned = b->scanned > n ? b->scanned - n : 0;
  if (b->head >= b->tail) buf_release(b);
}

void buf_commit(csock_buf *b, size_t n) { b->tail += n; }

void buf_free(csock_buf *b) { buf_release(b); }

/*
** Makes room for at least `want` more bytes at the tail (compacting, then
** growing) and returns where they go, with the room there in *avail.
** Returns NULL when memory runs out.
*/
char *buf_reserve(csock_buf *b, size_t want, size_t *avail) {
  if (b->data == NULL) {
    if (want <= BUF_CHUNK && pooled > 0) {
      b->data = pool[--pooled];
      b->cap = BUF_CHUNK;
    } else {
      size_t cap = want <= BUF_CHUNK ? BUF_CHUNK : want;
      b->data = malloc(cap);
      if (b->data == NULL) return NULL;
      b->cap = cap;
    }
    b->head = b->tail = 0;
  }
  if (b->cap - b->tail < want && b->head > 0) {
    size_t len = b->tail - b->head;
    memmove(b->data, b->data + b->head, len);
    b->head = 0;
    b->tail = len;
  }
  if (b->cap - b->tail < want) {
    size_t cap = b->cap;
    while (cap - b->tail < want) {
      if (cap > (size_t)-1 / 2) return NULL;
      cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (p == NULL) return NULL;
    b->data = p;
    b->cap = cap;
  }
  *avail = b->cap - b->tail;
  return b->data + b->tail;
}
