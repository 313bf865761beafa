/*
** read.c - buffered reading: read (the formats of file:read, and counts read
** straight into their string), lines, and the numeral scanner.
**
** The read-cursor rule: a read takes bytes at the buffer's cursor (from its
** head) and consumes them only when the whole read has succeeded, so a read
** that fails, times out or is cancelled part-way leaves every byte for the
** next call; while it runs the socket is marked busy (loop_read_begin), so
** no other reader -- a task, or a finalizer its own allocations ran -- can
** move the bytes under it.  Bytes come in through stream_fill, which reads
** from the descriptor or the socket's transport alike.
*/
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "csock.h"

#define DIRECT_MIN (16 * 1024) /* read(n) from this n up may go straight to the kernel */

enum { FMT_PUSHED, FMT_NEED, FMT_EOF, FMT_FAIL, FMT_TOOLONG };

/*
** The formats of one read take bytes at the buffer's cursor (from its
** head) and consume them only when the whole read succeeds, so a read
** that fails or times out part-way leaves every byte in the buffer.
*/
static const char *unread(const csock_socket *s, size_t *len) { return buf_unread(s->rbuf, len); }

static void take(csock_socket *s, size_t n) { buf_take(s->rbuf, n); }

/* Starts a read at the buffer's head (also what a failed read goes back to). */
static void read_begin(csock_socket *s) { buf_rewind(s->rbuf); }

/* The read succeeded: the bytes its formats took leave the buffer. */
static void read_commit(csock_socket *s) { buf_consume_taken(&s->rbuf); }

static int read_line(lua_State *L, csock_socket *s, int chop) {
  size_t len;
  const char *data = unread(s, &len);
  size_t from = buf_scanned(s->rbuf);
  const char *nl = len > from ? memchr(data + from, '\n', len - from) : NULL;
  if (nl != NULL) {
    size_t n = (size_t)(nl - data);
    if (n > s->maxline) return FMT_TOOLONG;
    lua_pushlstring(L, data, chop ? n : n + 1);
    take(s, n + 1);
    return FMT_PUSHED;
  }
  buf_set_scanned(s->rbuf, len);
  if (len > s->maxline) return FMT_TOOLONG;
  if (!s->eof) return FMT_NEED;
  if (len == 0) return FMT_EOF;
  lua_pushlstring(L, data, len); /* the last line, without its newline */
  take(s, len);
  return FMT_PUSHED;
}

static int read_count(lua_State *L, csock_socket *s, lua_Integer n) {
  size_t len;
  const char *data = unread(s, &len);
  if (n == 0) { /* like file:read(0): "" unless at end of stream */
    if (len > 0) {
      lua_pushliteral(L, "");
      return FMT_PUSHED;
    }
    return s->eof ? FMT_EOF : FMT_NEED;
  }
  if (len >= (size_t)n || (s->eof && len > 0)) {
    size_t n_take = len < (size_t)n ? len : (size_t)n;
    lua_pushlstring(L, data, n_take);
    take(s, n_take);
    return FMT_PUSHED;
  }
  return s->eof ? FMT_EOF : FMT_NEED;
}

static int read_all(lua_State *L, csock_socket *s) {
  if (!s->eof) return FMT_NEED;
  size_t len;
  const char *data = unread(s, &len);
  lua_pushlstring(L, data, len);
  take(s, len);
  return FMT_PUSHED;
}

#define MAXNUMERAL 200 /* liolib's L_MAXLENNUM */

static size_t skip_digits(const char *d, size_t len, size_t i, int hex) {
  while (i < len && (hex ? isxdigit((unsigned char)d[i]) : isdigit((unsigned char)d[i]))) i++;
  return i;
}

static size_t skip_char(const char *d, size_t len, size_t i, const char *set) {
  return i < len && d[i] != '\0' && strchr(set, d[i]) != NULL ? i + 1 : i;
}

/*
** Where the numeral that starts at d[i] ends, read the way file:read("n")
** reads one: sign, "0x", digits, a point and digits, an exponent.
*/
static size_t numeral_end(const char *d, size_t len, size_t i) {
  int hex = 0;
  size_t digits = 0;
  i = skip_char(d, len, i, "+-");
  if (i < len && d[i] == '0') {
    i++;
    if (skip_char(d, len, i, "xX") > i) {
      i++;
      hex = 1;
    } else {
      digits = 1;
    }
  }
  size_t j = skip_digits(d, len, i, hex);
  digits += j - i;
  i = j;
  if (i < len && d[i] == '.') {
    j = skip_digits(d, len, i + 1, hex);
    digits += j - i - 1;
    i = j;
  }
  if (digits > 0 && skip_char(d, len, i, hex ? "pP" : "eE") > i) {
    i = skip_char(d, len, i + 1, "+-");
    i = skip_digits(d, len, i, 0);
  }
  return i;
}

/*
** read("n"): blanks, then a numeral as a number; FMT_FAIL (a nil) if it is
** not one.  The blanks seen so far are kept as the buffer's scanned bytes, so a peer
** that trickles them is not rescanned from the start at every fill, and
** more of them than maxline fail as an over-long line would: they are
** buffered until the read ends, and the buffer must not grow unbounded.
*/
static int read_number(lua_State *L, csock_socket *s) {
  size_t len;
  const char *data = unread(s, &len);
  size_t start = buf_scanned(s->rbuf) < len ? buf_scanned(s->rbuf) : len;
  while (start < len && isspace((unsigned char)data[start])) start++;
  if (start > s->maxline) return FMT_TOOLONG;
  buf_set_scanned(s->rbuf, start);
  size_t end = numeral_end(data, len, start);
  if (end == len && !s->eof && end - start <= MAXNUMERAL) return FMT_NEED; /* may go on */
  if (end == start && start == len) return FMT_EOF;
  if (end - start > MAXNUMERAL) { /* as liolib: the first MAXNUMERAL bytes go, and it fails */
    take(s, start + MAXNUMERAL);
    return FMT_FAIL;
  }
  char text[MAXNUMERAL + 1];
  memcpy(text, data + start, end - start);
  text[end - start] = '\0';
  take(s, end);
  return lua_stringtonumber(L, text) != 0 ? FMT_PUSHED : FMT_FAIL;
}

/* The letter of a string format ('l', 'L', 'a' or 'n'; Lua 5.1/5.2's "*l" too), or 0. */
static int format_letter(const char *p) {
  if (*p == '*') p++;
  return (*p == 'l' || *p == 'L' || *p == 'a' || *p == 'n') && p[1] == '\0' ? *p : 0;
}

/* The letter of the string format at idx, or 0 (not a string, or not a letter format). */
static int letter_at(lua_State *L, int idx) {
  return lua_type(L, idx) == LUA_TSTRING ? format_letter(lua_tostring(L, idx)) : 0;
}

static int read_letter(lua_State *L, csock_socket *s, int letter) {
  switch (letter) {
    case 'l': return read_line(L, s, 1);
    case 'L': return read_line(L, s, 0);
    case 'n': return read_number(L, s);
    default: return read_all(L, s);
  }
}

static int read_one(lua_State *L, csock_socket *s, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) return read_count(L, s, lua_tointeger(L, idx));
  return read_letter(L, s, format_letter(lua_tostring(L, idx)));
}

/*
** The continuation context of a read: the number of formats, and for a
** read of one letter format, that letter, so that a read that waits and
** resumes does not decode its format again on every pass.
*/
#define CTX_NFMT(ctx) ((int)((ctx)&0xffff))
#define CTX_LETTER(ctx) ((int)(((ctx) >> 16) & 0xff))
#define CTX_MAKE(nfmt, letter) ((lua_KContext)(nfmt) | ((lua_KContext)(letter) << 16))

static lua_KContext read_context(lua_State *L, int nfmt) {
  return CTX_MAKE(nfmt, nfmt == 1 ? letter_at(L, 2) : 0);
}

/* Checks the formats; a count that is a float with an integral value
   becomes an integer, as file:read accepts it. */
static void check_formats(lua_State *L, int first, int last) {
  for (int i = first; i <= last; i++) {
    if (lua_type(L, i) == LUA_TNUMBER) {
      int isint;
      lua_Integer n = lua_tointegerx(L, i, &isint);
      csock_argcheck(L, isint && n >= 0, i, "invalid format");
      lua_pushinteger(L, n);
      lua_replace(L, i);
      continue;
    }
    const char *p = csock_checkstring(L, i);
    csock_argcheck(L, format_letter(p) != 0, i, "invalid format");
  }
}

enum { READ_DONE, READ_ERROR };

/*
** How much room the next fill should make for the format at idx (or for
** letter, the format's letter when the read context carries it): what a
** count still lacks; for a line or "a", as much as the read has gathered
** already, so that a long line or a big body is read in growing steps.
*/
static size_t fill_hint(lua_State *L, const csock_socket *s, int letter, int idx) {
  size_t len;
  unread(s, &len);
  if (letter || lua_type(L, idx) != LUA_TNUMBER) return len;
  lua_Integer n = lua_tointeger(L, idx);
  return n > 0 && (lua_Unsigned)n > len ? (size_t)((lua_Unsigned)n - len) : 0;
}

/*
** Stack: socket, nfmt formats, results so far.  Runs the formats in turn,
** filling the buffer and waiting (through k) when one needs more bytes.
** READ_DONE: results pushed (a nil ends them at end of stream) and their
** bytes consumed; READ_ERROR: *err holds the errno (EMSGSIZE for an
** over-long line) and the buffer is as it was.
*/
static int read_formats(lua_State *L, csock_socket *s, int status, lua_KContext ctx, int *err,
                        lua_KFunction k) {
  int nfmt = CTX_NFMT(ctx), letter = CTX_LETTER(ctx);
  double deadline = sock_op_deadline(L, s, status);
  int e = stream_resumed(L, status, s);
  while (e == 0) {
    int done = lua_gettop(L) - 1 - nfmt;
    int r = done >= nfmt ? FMT_PUSHED
            : letter     ? read_letter(L, s, letter)
                         : read_one(L, s, 2 + done);
    if (s->fd < 0) { /* a finalizer the result's allocation ran closed s */
      e = -EBADF;
      break;
    }
    if (done >= nfmt || r == FMT_EOF || r == FMT_FAIL) {
      if (r == FMT_EOF || r == FMT_FAIL) lua_pushnil(L);
      read_commit(s);
      loop_read_end(L, s);
      return READ_DONE;
    }
    if (r == FMT_PUSHED) continue;
    if (r == FMT_TOOLONG) {
      e = -EMSGSIZE;
      break;
    }
    e = stream_fill_or_wait(L, s, fill_hint(L, s, letter, 2 + done), deadline, ctx, k);
  }
  read_begin(s);
  loop_read_end(L, s);
  *err = e < 0 ? -e : e;
  return READ_ERROR;
}

static int read_error(lua_State *L, const csock_socket *s, int err) {
  if (err == EMSGSIZE) return csock_failmsg(L, "line too long", EMSGSIZE);
  return stream_error(L, s, err);
}

static int read_k(lua_State *L, int status, lua_KContext ctx);

/* A read's formats run for s, the socket at index 1: read_k's work, which a first call that has
   s at hand starts directly. */
static int read_run(lua_State *L, csock_socket *s, int status, lua_KContext ctx) {
  int err = 0, nfmt = CTX_NFMT(ctx);
  if (read_formats(L, s, status, ctx, &err, read_k) == READ_ERROR) {
    lua_settop(L, 1 + nfmt);
    return read_error(L, s, err);
  }
  return lua_gettop(L) - 1 - nfmt;
}

static int read_k(lua_State *L, int status, lua_KContext ctx) {
  return read_run(L, (csock_socket *)lua_touserdata(L, 1), status, ctx);
}

/*
** read("l"/"L") whose line is already in the buffer: the common case of a
** request parser, answered without the general machinery (no cursor: the
** line is consumed at once).  0 for anything else -- no newline yet, a
** line over maxline, the last line at end of stream -- which the general
** path then decides as it always does.
*/
static int read_buffered_line(lua_State *L, csock_socket *s, int letter) {
  if (letter != 'l' && letter != 'L') return 0;
  size_t len = buf_len(s->rbuf);
  const char *data = buf_data(s->rbuf);
  const char *nl = len > 0 ? memchr(data, '\n', len) : NULL;
  if (nl == NULL || (size_t)(nl - data) > s->maxline) return 0;
  size_t n = (size_t)(nl - data);
  s->rbusy = 1; /* for the finalizers the string's allocation may run */
  lua_pushlstring(L, data, letter == 'l' ? n : n + 1);
  s->rbusy = 0;
  buf_consume(&s->rbuf, n + 1); /* nothing to take if a finalizer closed s meanwhile */
  return 1;
}

/*
** read(n) for a large n with nothing buffered: recv(2) straight into the
** string it will return (buf_string_space), as recv does, so a stream read
** in big counts is neither copied nor taken in small steps.  A short read
** asks again at once, as recv does (more has usually come in meanwhile).
** When all n bytes came, they are the answer (1).  When the kernel has no
** more yet, or the stream ended, what came moves to the buffer and the
** general path goes on from there (0): the block is shared, a waiting task
** cannot keep it.  -errno when recv fails (what came stays in the buffer).
*/
static int read_count_direct(lua_State *L, csock_socket *s) {
  if (lua_type(L, 2) != LUA_TNUMBER || s->type != SOCK_STREAM || s->eof || buf_len(s->rbuf) > 0 ||
      s->xport != NULL || !loop_ready(&s->watch, CSOCK_READ))
    return 0;
  lua_Integer n = lua_tointeger(L, 2);
  size_t room, got = 0;
  int err = 0;
  if (n < DIRECT_MIN) return 0;
  char *p = buf_string_space((size_t)n, &room);
  if (room < (size_t)n) return 0; /* more than one read takes */
  while (got < (size_t)n) {
    ssize_t r = recv(s->fd, p + got, (size_t)n - got, 0);
    if (r > 0) {
      got += (size_t)r;
    } else if (r == 0) {
      s->eof = 1;
      loop_drained(&s->watch);
      break;
    } else if (errno != EINTR) {
      if (errno == EAGAIN) loop_blocked(&s->watch, CSOCK_READ);
      err = errno == EAGAIN ? 0 : errno;
      break;
    }
  }
  if (got == (size_t)n) {
    buf_push_string(L, p, got);
    return 1;
  }
  if (got > 0) { /* kept for the next read, even when this one fails */
    size_t avail;
    char *keep = buf_reserve(&s->rbuf, (size_t)n, &avail);
    if (keep == NULL) return luaL_error(L, "not enough memory");
    memcpy(keep, p, got);
    buf_commit(s->rbuf, got);
  }
  return -err;
}

/*
** read() or read(letter), the common case: the format needs no checking
** (check_formats, read_context) nor stack room (a C function has
** LUA_MINSTACK slots), and the letter goes straight into the context.
*/
static int read_one_letter(lua_State *L, csock_socket *s, int nfmt, int letter) {
  if (read_buffered_line(L, s, letter)) return 1;
  if (nfmt == 0) lua_pushliteral(L, "l"); /* the stack holds one format, as read_k expects */
  read_begin(s);
  loop_read_begin(L, s);
  return read_run(L, s, LUA_OK, CTX_MAKE(1, letter));
}

static int read_method(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  int nfmt = lua_gettop(L) - 1;
  stream_check_not_busy(L, s);
  sock_note_read(s);
  if (nfmt <= 1) {
    int letter = nfmt == 0 ? 'l' : letter_at(L, 2);
    if (letter != 0) return read_one_letter(L, s, nfmt, letter);
  }
  csock_argcheck(L, nfmt <= 250, 252, "too many formats");
  check_formats(L, 2, 1 + nfmt);
  luaL_checkstack(L, nfmt + LUA_MINSTACK, "too many formats");
  read_begin(s);
  if (nfmt == 1) {
    int direct = read_count_direct(L, s);
    if (direct != 0) return direct > 0 ? 1 : read_error(L, s, -direct);
  }
  loop_read_begin(L, s);
  return read_run(L, s, LUA_OK, read_context(L, nfmt));
}

/* lines: the iterator's upvalues are the socket and the formats. */
static int lines_k(lua_State *L, int status, lua_KContext ctx) {
  int err = 0, nfmt = CTX_NFMT(ctx);
  csock_socket *s = (csock_socket *)lua_touserdata(L, 1);
  if (read_formats(L, s, status, ctx, &err, lines_k) == READ_ERROR) {
    lua_settop(L, 1 + nfmt);
    read_error(L, s, err);
    return luaL_error(L, "%s", lua_tostring(L, -2));
  }
  return lua_gettop(L) - 1 - nfmt;
}

static int lines_iter(lua_State *L) {
  int nfmt = (int)lua_tointeger(L, lua_upvalueindex(2));
  lua_settop(L, 0);
  luaL_checkstack(L, 2 * nfmt + LUA_MINSTACK, "too many formats");
  lua_pushvalue(L, lua_upvalueindex(1));
  csock_socket *s = (csock_socket *)lua_touserdata(L, 1);
  if (s->fd < 0) return luaL_error(L, "socket is already closed");
  stream_check_not_busy(L, s);
  sock_note_read(s);
  for (int i = 1; i <= nfmt; i++) lua_pushvalue(L, lua_upvalueindex(2 + i));
  if (nfmt == 1 && read_buffered_line(L, s, letter_at(L, 2))) return 1;
  read_begin(s);
  loop_read_begin(L, s);
  return lines_k(L, LUA_OK, read_context(L, nfmt));
}

static int lines_method(lua_State *L) {
  sock_checkopen(L, 1);
  int nfmt = lua_gettop(L) - 1;
  if (nfmt == 0) {
    lua_pushliteral(L, "l");
    nfmt = 1;
  }
  csock_argcheck(L, nfmt <= 250, 252, "too many formats");
  check_formats(L, 2, 1 + nfmt);
  lua_pushinteger(L, nfmt);
  lua_insert(L, 2);
  lua_pushcclosure(L, lines_iter, 2 + nfmt);
  return 1;
}

const luaL_Reg read_methods[] = {
    {"read", read_method},
    {"lines", lines_method},
    {NULL, NULL},
};
