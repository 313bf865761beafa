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

static _Thread_local struct csock_buf *pool[BUF_POOL_MAX]; /* empty blocks of BUF_CHUNK bytes */
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

/*
** The buffer is one block: this header, then cap bytes of data.  A socket
** holds a pointer to it, NULL while the buffer is empty, so an idle
** connection pays one pointer for its buffer, not the bookkeeping.  The
** functions below that only look take NULL as the empty buffer; those
** that may allocate or free take the socket's pointer by address.
*/
struct csock_buf {
  size_t cap;        /* bytes of data after the header */
  size_t head, tail; /* bytes [head, tail) of data are unread */
  size_t scanned;    /* bytes already known to hold no '\n' (from head, or from the cursor) */
  size_t cursor;     /* bytes from head the read under way has taken (read.c) */
};

static char *data_of(const csock_buf *b) { return (char *)(b + 1); }

size_t buf_len(const csock_buf *b) { return b != NULL ? b->tail - b->head : 0; }

const char *buf_data(const csock_buf *b) { return b != NULL ? data_of(b) + b->head : ""; }

size_t buf_scanned(const csock_buf *b) { return b != NULL ? b->scanned : 0; }

/* An empty buffer has scanned nothing, so there is nothing to set. */
void buf_set_scanned(csock_buf *b, size_t n) {
  if (b != NULL) b->scanned = n;
}

/* The unread bytes past the cursor, and (*len) how many. */
const char *buf_unread(const csock_buf *b, size_t *len) {
  if (b == NULL) {
    *len = 0;
    return "";
  }
  *len = b->tail - b->head - b->cursor;
  return data_of(b) + b->head + b->cursor;
}

/* The read under way takes n more bytes (n is 0 when b is empty). */
void buf_take(csock_buf *b, size_t n) {
  if (b == NULL) return;
  b->cursor += n;
  b->scanned = 0;
}

/* The cursor goes back to the head: a read begins, or gives its bytes back. */
void buf_rewind(csock_buf *b) {
  if (b == NULL) return;
  b->cursor = 0;
  b->scanned = 0;
}

static void buf_release(csock_buf **bp) {
  csock_buf *b = *bp;
  if (b == NULL) return;
  if (b->cap == BUF_CHUNK && pooled < BUF_POOL_MAX)
    pool[pooled++] = b;
  else
    free(b);
  *bp = NULL;
}

void buf_consume(csock_buf **bp, size_t n) {
  csock_buf *b = *bp;
  if (b == NULL) return; /* freed meanwhile (the socket closed): nothing to take */
  b->head += n;
  if (b->head >= b->tail)
    buf_release(bp);
  else
    b->scanned = b->scanned > n ? b->scanned - n : 0;
}

/* The read under way succeeded: the bytes it took leave, and the cursor is back at the head. */
void buf_consume_taken(csock_buf **bp) {
  csock_buf *b = *bp;
  if (b == NULL) return; /* nothing taken, or freed meanwhile (the socket closed) */
  b->head += b->cursor;
  b->cursor = b->scanned = 0;
  if (b->head >= b->tail) buf_release(bp);
}

void buf_commit(csock_buf *b, size_t n) { b->tail += n; }

void buf_free(csock_buf **bp) { buf_release(bp); }

/* A new, empty block with room for at least want bytes; NULL when memory runs out. */
static csock_buf *buf_new(size_t want) {
  csock_buf *b;
  if (want <= BUF_CHUNK && pooled > 0) {
    b = pool[--pooled];
  } else {
    size_t cap = want <= BUF_CHUNK ? BUF_CHUNK : want;
    if (cap > (size_t)-1 / 2) return NULL;
    b = (csock_buf *)malloc(sizeof *b + cap);
    if (b == NULL) return NULL;
    b->cap = cap;
  }
  b->head = b->tail = b->scanned = b->cursor = 0;
  return b;
}

/*
** Makes room for at least `want` more bytes at the tail (compacting, then
** growing) and returns where they go, with the room there in *avail.
** Returns NULL when memory runs out.
*/
char *buf_reserve(csock_buf **bp, size_t want, size_t *avail) {
  csock_buf *b = *bp;
  if (b == NULL) {
    b = buf_new(want);
    if (b == NULL) return NULL;
    *bp = b;
  }
  if (b->cap - b->tail < want && b->head > 0) {
    size_t len = b->tail - b->head;
    memmove(data_of(b), data_of(b) + b->head, len);
    b->head = 0;
    b->tail = len;
  }
  if (b->cap - b->tail < want) {
    size_t cap = b->cap;
    while (cap - b->tail < want) {
      if (cap > (size_t)-1 / 4) return NULL;
      cap *= 2;
    }
    csock_buf *grown = (csock_buf *)realloc(b, sizeof *b + cap);
    if (grown == NULL) return NULL;
    grown->cap = cap;
    *bp = b = grown;
  }
  *avail = b->cap - b->tail;
  return data_of(b) + b->tail;
}
