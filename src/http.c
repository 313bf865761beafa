/*
** http.c - the HTTP/1.1 message parser of csock.http (RFC 9112), working in
** place in a socket's read buffer.
**
** Three socket methods, all internal to lua/csock/http.lua:
**   s:_httpreq(idle, timeout, max_line, max_header_bytes, max_headers)
**     -> method, path, query|nil, version, false, fields, bodylen, flags
**   s:_httpres(timeout, timeout, max_line, max_header_bytes, max_headers)
**     -> status, reason, minor, false, fields, bodylen, flags
** (version: "1.1" or "1.0"; minor: 1 or 0; fields: the header lines as they
** came, CRLFs included; false stands for the headers table, made from them
** by csock.core.http.fields when asked for)
**   s:_httpchunk(timeout, crlf_first, max_line, max_trailer_bytes, max_trailers)
**     -> size of the next chunk (0: the last; its trailer section is consumed)
** On a malformed message they return false, status, message (the status a
** server answers with: 400, 414, 431, 501, 505); on a network failure or a
** timeout nil, message, errno, partial (partial: bytes of the message had
** come); at a clean end of stream before the first byte nil, "closed".
** A timeout of nil is the socket's own (s:settimeout), as for s:read.
**
** The parse is in two passes, as picohttpparser's is: a scan for the empty
** line that ends the head, enforcing the size limits as the bytes come (so
** a flood costs at most the limits), then one pass over the complete head
** that checks every byte and builds the Lua values.  The scan remembers how
** far it got when it has to wait (in a userdata at stack slot SCAN), so a
** head that trickles in is not scanned again from its start.  Nothing is
** consumed until the head parses: a timeout keeps every byte.
**
** Strictness, each a request-smuggling vector elsewhere: every line ends
** in CRLF (a bare LF or CR is 400), no obs-fold, no space before a colon,
** token characters in names and methods, exactly one Content-Length of
** digits only, Transfer-Encoding together with Content-Length is 400, and
** Transfer-Encoding must be exactly "chunked" (another coding is 501).
*/
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "csock.h"

#define SCAN 7 /* stack slot of the saved scan state */

enum { K_REQ, K_RES, K_CHUNK };

/*
** Flags returned with a head: what Connection and Expect said; for a
** request also whether its connection may go on after the response
** (F_KEEP), and whether that is HTTP/1.0's keep-alive (F_KEEP10, with
** F_KEEP), which the server would otherwise work out per request in Lua.
*/
enum {
  F_CLOSE = 1,
  F_KEEPALIVE = 2,
  F_CONTINUE = 4,
  F_UPGRADE = 8,
  F_EXPECT_OTHER = 16,
  F_KEEP = 32,
  F_KEEP10 = 64
};

#define BODY_CHUNKED (-1)
#define BODY_TO_CLOSE (-2) /* a response with neither length nor chunking */
#define LENGTH_HUGE (INT64_MAX / 4)

/* Where a scan of the head stands; saved in a userdata while waiting. */
typedef struct scan {
  size_t pos;   /* offset (from the buffer's head) of the next line to scan */
  size_t first; /* length of the first line with its CRLF; 0 while unknown */
  size_t lines; /* lines after the first */
} scan;

/* The continuation context: the kind, and whether the idle deadline still runs. */
#define CTX_IDLE 16
#define CTX_KIND(ctx) ((int)((ctx)&15))

typedef struct limits {
  size_t max_line, max_bytes, max_lines;
} limits;

/* ---------------------------------------------------------------- bytes */

/* tchar of RFC 9110 5.6.2: 1 for a token character. */
static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,  ['~'] = 1, ['0'] = 1,
    ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,  ['7'] = 1, ['8'] = 1,
    ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,  ['F'] = 1, ['G'] = 1,
    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1,  ['N'] = 1, ['O'] = 1,
    ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,  ['V'] = 1, ['W'] = 1,
    ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,  ['d'] = 1, ['e'] = 1,
    ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1,  ['l'] = 1, ['m'] = 1,
    ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,  ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

/* field-vchar, SP and HTAB: what a field value may hold (obs-text included). */
static int value_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

static int lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* Whether d[0..n) equals the lowercase word w, in any letter case. */
static int word_is(const char *d, size_t n, const char *w) {
  size_t i = 0;
  for (; i < n && w[i] != '\0'; i++)
    if (lower((unsigned char)d[i]) != w[i]) return 0;
  return i == n && w[i] == '\0';
}

static size_t skip_ows(const char *d, size_t i, size_t end) {
  while (i < end && (d[i] == ' ' || d[i] == '\t')) i++;
  return i;
}

/* ---------------------------------------------------------------- scan */

/*
** Scans lines from sc->pos for the empty line that ends a head: its total
** length, 0 to wait for more bytes, or -status when a limit is broken or a
** line does not end in CRLF.  The first line counts against max_line, the
** rest against max_bytes and max_lines.
*/
static long scan_head(const char *d, size_t len, scan *sc, const limits *lim) {
  size_t p = sc->pos;
  for (;;) {
    const char *nl = p < len ? memchr(d + p, '\n', len - p) : NULL;
    size_t end = nl != NULL ? (size_t)(nl - d) : len;
    if (sc->first == 0 && end - p > lim->max_line + 1) return -414;
    if (sc->first != 0 && end - sc->first > lim->max_bytes) return -431;
    if (nl == NULL) return 0;
    if (end == p || d[end - 1] != '\r') return -400;
    if (memchr(d + p, '\r', end - 1 - p) != NULL) return -400; /* a bare CR */
    p = end + 1;
    if (sc->first == 0) {
      sc->first = p;
    } else if (end - 1 == sc->pos) {
      return (long)p; /* the empty line */
    } else if (++sc->lines > lim->max_lines) {
      return -431;
    }
    sc->pos = p;
  }
}

/* ---------------------------------------------------------------- fields */

/* Pushes the field name d[0..n) lowercased. */
static void push_lower(lua_State *L, const char *d, size_t n) {
  char small[64];
  size_t i = 0;
  while (i < n && !(d[i] >= 'A' && d[i] <= 'Z')) i++;
  if (i == n) { /* already lowercase: the common case of modern clients */
    lua_pushlstring(L, d, n);
    return;
  }
  luaL_Buffer b;
  char *p = n <= sizeof small ? small : luaL_buffinitsize(L, &b, n);
  for (i = 0; i < n; i++) p[i] = (char)lower((unsigned char)d[i]);
  if (n <= sizeof small)
    lua_pushlstring(L, p, n);
  else
    luaL_pushresultsize(&b, n);
}

/* What the framing fields said, gathered while the head is parsed. */
typedef struct framing {
  int64_t length; /* Content-Length, -1 when absent */
  int lengths;    /* Content-Length fields seen */
  int te;         /* Transfer-Encoding fields seen */
  int chunked;    /* the codings are exactly "chunked" */
  int unknown;    /* a coding other than chunked */
  int hosts;      /* Host fields seen */
  int flags;      /* F_* */
} framing;

static const char *parse_length(framing *f, const char *v, size_t n) {
  if (++f->lengths > 1) return "more than one Content-Length";
  if (n == 0) return "bad Content-Length";
  int64_t x = 0;
  for (size_t i = 0; i < n; i++) {
    if (v[i] < '0' || v[i] > '9') return "bad Content-Length";
    x = x >= LENGTH_HUGE / 10 ? LENGTH_HUGE : x * 10 + (v[i] - '0');
  }
  f->length = x;
  return NULL;
}

/*
** Calls fn on each element of the comma-separated list v[0..n), with
** blanks trimmed; an element that is not a token is an error.
*/
static const char *each_token(framing *f, const char *v, size_t n,
                              const char *(*fn)(framing *, const char *, size_t)) {
  size_t i = 0;
  while (i < n) {
    i = skip_ows(v, i, n);
    size_t s = i;
    while (i < n && tchar[(unsigned char)v[i]]) i++;
    size_t e = i;
    i = skip_ows(v, i, n);
    if (i < n && v[i] != ',') return "bad list in a field";
    i++;
    if (e > s) {
      const char *err = fn(f, v + s, e - s);
      if (err != NULL) return err;
    }
  }
  return NULL;
}

static const char *coding(framing *f, const char *t, size_t n) {
  if (!word_is(t, n, "chunked")) {
    f->unknown = 1;
  } else if (f->chunked) {
    return "chunked applied twice";
  } else {
    f->chunked = 1;
    return NULL;
  }
  f->chunked = 0; /* chunked must be the last coding */
  return NULL;
}

static const char *connection_option(framing *f, const char *t, size_t n) {
  if (word_is(t, n, "close")) f->flags |= F_CLOSE;
  if (word_is(t, n, "keep-alive")) f->flags |= F_KEEPALIVE;
  if (word_is(t, n, "upgrade")) f->flags |= F_UPGRADE;
  return NULL;
}

/* Notes what a field means for framing; an error message if it is bad. */
static const char *framing_field(framing *f, const char *name, size_t nn, const char *v,
                                 size_t vn) {
  switch (nn) {
    case 4:
      if (word_is(name, nn, "host")) f->hosts++;
      return NULL;
    case 6:
      if (!word_is(name, nn, "expect")) return NULL;
      f->flags |= word_is(v, vn, "100-continue") ? F_CONTINUE : F_EXPECT_OTHER;
      return NULL;
    case 10:
      return word_is(name, nn, "connection") ? each_token(f, v, vn, connection_option) : NULL;
    case 14: return word_is(name, nn, "content-length") ? parse_length(f, v, vn) : NULL;
    case 17:
      if (!word_is(name, nn, "transfer-encoding")) return NULL;
      f->te++;
      return each_token(f, v, vn, coding);
    default: return NULL;
  }
}

/*
** Sets headers[lname] = value, joining a repeated field with ", ".  An
** empty value adds nothing to a list (RFC 9110 5.6.1: empty elements are
** ignored), so no joined value starts or ends with a separator.
*/
static void set_header(lua_State *L, int headers, const char *v, size_t vn) {
  lua_pushvalue(L, -1); /* the lowercase name */
  if (lua_rawget(L, headers) == LUA_TSTRING && lua_rawlen(L, -1) > 0) {
    if (vn == 0) {
      lua_pop(L, 2); /* keep what is there */
      return;
    }
    lua_pushliteral(L, ", ");
    lua_pushlstring(L, v, vn);
    lua_concat(L, 3);
  } else {
    lua_pop(L, 1);
    lua_pushlstring(L, v, vn);
  }
  lua_rawset(L, headers);
}

/*
** Checks the header lines of d[0..n) (each ending in CRLF, checked by the
** scan) and pushes false, for the headers table, and the lines themselves
** as one string.  csock.http makes the table from the lines when a handler
** first asks for it (http_fields) and rawheaders likewise: most handlers
** never look at either, and the table, its lowercased keys and values cost
** more than the rest of the parse.  NULL, or the message of a malformed
** field.
*/
static const char *parse_fields(lua_State *L, const char *d, size_t n, framing *f) {
  size_t p = 0;
  while (p < n) {
    size_t end = (size_t)((const char *)memchr(d + p, '\n', n - p) - d) - 1; /* the CR */
    size_t i = p;
    while (i < end && tchar[(unsigned char)d[i]]) i++;
    if (i == p) return d[p] == ' ' || d[p] == '\t' ? "obsolete line folding" : "bad field name";
    if (i == end || d[i] != ':') return "bad field name";
    size_t nn = i - p, vs = skip_ows(d, i + 1, end), ve = end;
    while (ve > vs && (d[ve - 1] == ' ' || d[ve - 1] == '\t')) ve--;
    for (size_t j = vs; j < ve; j++)
      if (!value_char((unsigned char)d[j])) return "bad character in a field value";
    const char *err = framing_field(f, d + p, nn, d + vs, ve - vs);
    if (err != NULL) return err;
    p = end + 2;
  }
  lua_pushboolean(L, 0);
  lua_pushlstring(L, d, n);
  return NULL;
}

/*
** csock.core.http.fields(lines, mt): the headers table of the header lines
** _httpreq or _httpres returned (lowercase names, a repeated field's values
** joined), with metatable mt.  Lines from elsewhere do no harm: one without
** a colon is skipped.
*/
static int http_fields(lua_State *L) {
  size_t n, lines = 0;
  const char *d = luaL_checklstring(L, 1, &n);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  for (const char *q = d; (q = memchr(q, '\n', n - (size_t)(q - d))) != NULL; q++) lines++;
  lua_createtable(L, 0, (int)(lines < 64 ? lines : 64));
  size_t p = 0;
  while (p < n) {
    const char *nl = memchr(d + p, '\n', n - p);
    size_t next = nl != NULL ? (size_t)(nl - d) + 1 : n, end = next;
    while (end > p && (d[end - 1] == '\n' || d[end - 1] == '\r')) end--;
    const char *colon = memchr(d + p, ':', end - p);
    if (colon != NULL && colon > d + p) {
      size_t nn = (size_t)(colon - d) - p, vs = skip_ows(d, p + nn + 1, end), ve = end;
      while (ve > vs && (d[ve - 1] == ' ' || d[ve - 1] == '\t')) ve--;
      push_lower(L, d + p, nn);
      set_header(L, 3, d + vs, ve - vs);
    }
    p = next;
  }
  lua_pushvalue(L, 2);
  lua_setmetatable(L, 3);
  return 1;
}

/* "HTTP/1.x" at d: its minor version, -1 when malformed, -2 for another major. */
static int parse_version(const char *d, size_t n) {
  if (n != 8 || memcmp(d, "HTTP/", 5) != 0 || d[6] != '.') return -1;
  if (d[5] < '0' || d[5] > '9' || d[7] < '0' || d[7] > '9') return -1;
  if (d[5] != '1') return -2;
  return d[7] == '0' ? 0 : 1;
}

/* ---------------------------------------------------------------- request */

static const char *const methods[] = {"GET",     "HEAD",    "POST",  "PUT",   "DELETE",
                                      "OPTIONS", "CONNECT", "TRACE", "PATCH", NULL};

/* The name in methods[] of the method m[0..n), or NULL when not known. */
static const char *known_method(const char *m, size_t n) {
  for (int i = 0; methods[i] != NULL; i++)
    if (strlen(methods[i]) == n && memcmp(methods[i], m, n) == 0) return methods[i];
  return NULL;
}

typedef struct failure {
  int status;
  const char *msg;
} failure;

static int fail(failure *x, int status, const char *msg) {
  x->status = status;
  x->msg = msg;
  return -1;
}

/*
** The path of a request target: origin-form as is, absolute-form from its
** path on, "*" for OPTIONS.  Sets *q to the '?' or to the end.
*/
static int target_path(const char *t, size_t n, size_t *start, size_t *q) {
  size_t s = 0;
  if (n == 1 && t[0] == '*') {
    *start = 0;
    *q = 1;
    return 0;
  }
  if (t[0] != '/') {
    const char *sep = n > 3 ? memchr(t, ':', n) : NULL;
    if (sep == NULL || (size_t)(sep - t) + 3 > n || sep[1] != '/' || sep[2] != '/') return -1;
    const char *slash = memchr(sep + 3, '/', n - (size_t)(sep + 3 - t));
    s = slash != NULL ? (size_t)(slash - t) : n;
  }
  const char *qm = memchr(t + s, '?', n - s);
  *start = s;
  *q = qm != NULL ? (size_t)(qm - t) : n;
  return 0;
}

/*
** Pushes method, path, query and version from the request line d[0..n)
** (CRLF excluded); sets *minor.
*/
static int request_line(lua_State *L, const char *d, size_t n, int *minor, failure *x) {
  size_t m = 0;
  while (m < n && tchar[(unsigned char)d[m]]) m++;
  if (m == 0 || m == n || d[m] != ' ') return fail(x, 400, "bad request line");
  size_t t = m + 1, te = t;
  while (te < n && (unsigned char)d[te] > 0x20 && (unsigned char)d[te] < 0x7f) te++;
  if (te == t || te == n || d[te] != ' ') return fail(x, 400, "bad request target");
  *minor = parse_version(d + te + 1, n - te - 1);
  if (*minor == -1) return fail(x, 400, "bad HTTP version");
  if (*minor == -2) return fail(x, 505, "HTTP version not supported");
  const char *method = known_method(d, m);
  if (method == NULL) return fail(x, 501, "method not implemented");
  size_t ps, q;
  if (target_path(d + t, te - t, &ps, &q) < 0) return fail(x, 400, "bad request target");
  lua_pushstring(L, method); /* a constant's address: Lua's string cache finds it, no hashing */
  if (q == ps)
    lua_pushliteral(L, "/");
  else
    lua_pushlstring(L, d + t + ps, q - ps);
  if (t + q < te)
    lua_pushlstring(L, d + t + q + 1, te - t - q - 1);
  else
    lua_pushnil(L);
  lua_pushstring(L, *minor == 1 ? "1.1" : "1.0");
  return 0;
}

/* Sets *body to the body length of a request (BODY_CHUNKED), or -1 with x set. */
static int request_body(const framing *f, int minor, int64_t *body, failure *x) {
  if (minor == 1 && f->hosts != 1) return fail(x, 400, "missing or repeated Host");
  if (minor == 0 && f->hosts > 1) return fail(x, 400, "repeated Host");
  *body = f->length < 0 ? 0 : f->length;
  if (f->te == 0) return 0;
  if (f->lengths > 0) return fail(x, 400, "Transfer-Encoding with Content-Length");
  if (f->unknown) return fail(x, 501, "transfer coding not implemented");
  if (!f->chunked) return fail(x, 400, "bad Transfer-Encoding");
  *body = BODY_CHUNKED;
  return 0;
}

/* Parses a complete request head d[0..n): 8 results pushed, or -1 with x set. */
static int parse_request(lua_State *L, const char *d, const scan *sc, failure *x) {
  framing f = {-1, 0, 0, 0, 0, 0, 0};
  int minor = 0;
  if (request_line(L, d, sc->first - 2, &minor, x) < 0) return -1;
  const char *err = parse_fields(L, d + sc->first, sc->pos - sc->first, &f);
  if (err != NULL) return fail(x, 400, err);
  int64_t body;
  if (request_body(&f, minor, &body, x) < 0) return -1;
  if (!(f.flags & F_CLOSE) && (minor == 1 || (f.flags & F_KEEPALIVE)))
    f.flags |= minor == 1 ? F_KEEP : F_KEEP | F_KEEP10;
  lua_pushinteger(L, body);
  lua_pushinteger(L, f.flags);
  return 8;
}

/* ---------------------------------------------------------------- response */

static int parse_response(lua_State *L, const char *d, const scan *sc, failure *x) {
  framing f = {-1, 0, 0, 0, 0, 0, 0};
  size_t n = sc->first - 2;
  int minor = n >= 12 ? parse_version(d, 8) : -1;
  if (minor < 0 || d[8] != ' ') return fail(x, 400, "bad status line");
  int status = 0;
  for (int i = 9; i < 12; i++) {
    if (d[i] < '0' || d[i] > '9') return fail(x, 400, "bad status code");
    status = status * 10 + (d[i] - '0');
  }
  if (status < 100 || (n > 12 && d[12] != ' ')) return fail(x, 400, "bad status line");
  for (size_t i = 13; i < n; i++)
    if (!value_char((unsigned char)d[i])) return fail(x, 400, "bad reason phrase");
  lua_pushinteger(L, status);
  lua_pushlstring(L, n > 13 ? d + 13 : "", n > 13 ? n - 13 : 0);
  lua_pushinteger(L, minor);
  const char *err = parse_fields(L, d + sc->first, sc->pos - sc->first, &f);
  if (err != NULL) return fail(x, 400, err);
  if (f.te > 0 && f.lengths > 0) return fail(x, 400, "Transfer-Encoding with Content-Length");
  lua_pushinteger(L, f.te > 0        ? (f.chunked && !f.unknown ? BODY_CHUNKED : BODY_TO_CLOSE)
                     : f.lengths > 0 ? f.length
                                     : BODY_TO_CLOSE);
  lua_pushinteger(L, f.flags);
  return 7;
}

/* ---------------------------------------------------------------- chunk */

/*
** The chunk-size line at d (after the CRLF that ends the previous chunk's
** data when crlf is set; at most max bytes with its extensions): its size,
** with *used the bytes up to and including its CRLF; -2 to wait for more;
** -1 with x set when malformed.
*/
static int64_t chunk_line(const char *d, size_t len, int crlf, size_t max, size_t *used,
                          failure *x) {
  size_t p = 0;
  if (crlf) {
    if (len < 2) return -2;
    if (d[0] != '\r' || d[1] != '\n') return fail(x, 400, "bad chunk end");
    p = 2;
  }
  const char *nl = memchr(d + p, '\n', len - p);
  if (nl == NULL) return len - p > max ? fail(x, 400, "chunk line too long") : -2;
  size_t end = (size_t)(nl - d);
  if (end - p > max) return fail(x, 400, "chunk line too long");
  if (end == p || d[end - 1] != '\r') return fail(x, 400, "bad chunk line");
  int64_t size = 0;
  size_t i = p;
  for (; i < end - 1; i++) {
    int c = lower((unsigned char)d[i]);
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) break;
    if (i - p >= 15) return fail(x, 400, "chunk too large");
    size = size * 16 + v;
  }
  if (i == p) return fail(x, 400, "bad chunk size");
  i = skip_ows(d, i, end - 1);
  if (i < end - 1 && d[i] != ';') return fail(x, 400, "bad chunk size");
  for (; i < end - 1; i++)
    if (!value_char((unsigned char)d[i])) return fail(x, 400, "bad chunk extension");
  *used = end + 1;
  return size;
}

/* ---------------------------------------------------------------- driver */

static void limits_from(lua_State *L, limits *lim) {
  lim->max_line = (size_t)lua_tointeger(L, 4);
  lim->max_bytes = (size_t)lua_tointeger(L, 5);
  lim->max_lines = (size_t)lua_tointeger(L, 6);
}

/* The deadline of the timeout at idx; nil: the socket's own (settimeout). */
static double deadline_in(lua_State *L, csock_socket *s, int idx) {
  return lua_isnil(L, idx) ? sock_deadline(s) : csock_now() + lua_tonumber(L, idx);
}

/* The scan state: the saved one after a wait, else a fresh one in *local. */
static scan *scan_state(lua_State *L, scan *local) {
  if (lua_gettop(L) >= SCAN) return (scan *)lua_touserdata(L, SCAN);
  memset(local, 0, sizeof *local);
  return local;
}

/*
** Keeps the scan state on the stack before a wait (C locals do not survive
** one); a scan that has not started needs none, which spares the idle wait
** of every keep-alive request an allocation.
*/
static scan *scan_save(lua_State *L, scan *sc) {
  if (lua_gettop(L) >= SCAN || (sc->pos == 0 && sc->first == 0)) return sc;
  scan *saved = (scan *)lua_newuserdatauv(L, sizeof *saved, 0);
  *saved = *sc;
  return saved;
}

static int protocol_error(lua_State *L, int status, const char *msg) {
  lua_settop(L, 0);
  lua_pushboolean(L, 0);
  lua_pushinteger(L, status);
  lua_pushstring(L, msg);
  return 3;
}

/* The socket stays on the stack: the message may live in its TLS state. */
static int io_failure(lua_State *L, const csock_socket *s, int e, int partial) {
  stream_error(L, s, e);
  lua_pushboolean(L, partial);
  return 4;
}

/* Where the text of the line d[p..e) ends, e being its LF: before a CR that precedes the LF. */
static size_t text_end(const char *d, size_t p, size_t e) {
  return e > p && d[e - 1] == '\r' ? e - 1 : e;
}

/*
** Where the response head in d[0..len) ends when its lines may end in a
** bare LF: the length of the head with its empty line, 0 while it has not
** all come, or -status.  *copy_len is what the head takes with CRLFs.
*/
static long lenient_head_end(const char *d, size_t len, const limits *lim, size_t *copy_len) {
  size_t p = 0, lines = 0, total = 0, fields = 0; /* fields: the bytes after the first line */
  for (;;) {
    const char *nl = p < len ? memchr(d + p, '\n', len - p) : NULL;
    size_t e = nl != NULL ? (size_t)(nl - d) : len;
    if (lines == 0 && e - p > lim->max_line + 1) return -414;
    if (lines > 0 && fields + (e - p) > lim->max_bytes) return -431;
    if (nl == NULL) return 0;
    size_t t = text_end(d, p, e);
    if (memchr(d + p, '\r', t - p) != NULL) return -400; /* a bare CR */
    if (t == p) { /* the empty line: the head ends, unless the status line is missing */
      *copy_len = total + 2;
      return lines == 0 ? -400 : (long)(e + 1);
    }
    if (++lines > lim->max_lines + 1) return -431;
    total += t - p + 2;
    if (lines > 1) fields += t - p + 2;
    p = e + 1;
  }
}

static int lenient_error(lua_State *L, long end) {
  return protocol_error(L, (int)-end,
                        end == -414   ? "status line too long"
                        : end == -431 ? "header section too large"
                                      : "bad line ending");
}

/*
** A response head with lines that end in a bare LF, which RFC 9112 (2.2)
** lets a recipient take for CRLF and which servers written with print()
** still send: parsed as the CRLF head it stands for, from a copy (a
** userdata, so that an error in the parse loses nothing).  Requests stay
** strict -- a bare LF is a smuggling vector between a proxy and a server --
** and so do a response's chunk lines and trailers.
*/
static int attempt_lenient_response(lua_State *L, csock_socket *s, const limits *lim) {
  const char *d = buf_data(s->rbuf);
  size_t copy_len = 0;
  long end = lenient_head_end(d, buf_len(s->rbuf), lim, &copy_len);
  if (end == 0) return 0;
  if (end < 0) return lenient_error(L, end);
  int base = lua_gettop(L);
  char *copy = (char *)lua_newuserdatauv(L, copy_len, 0);
  d = buf_data(s->rbuf); /* the read flag keeps the bytes where they were */
  size_t p = 0, q = 0;
  while (p < (size_t)end) {
    size_t e = (size_t)((const char *)memchr(d + p, '\n', (size_t)end - p) - d);
    size_t n = text_end(d, p, e) - p;
    memcpy(copy + q, d + p, n);
    copy[q + n] = '\r';
    copy[q + n + 1] = '\n';
    q += n + 2;
    p = e + 1;
  }
  scan sc = {0, 0, 0};
  failure x = {0, NULL};
  long copy_end = scan_head(copy, copy_len, &sc, lim); /* the limits, counted as for CRLFs */
  if (copy_end != (long)copy_len) return lenient_error(L, copy_end < 0 ? copy_end : -400);
  if (parse_response(L, copy, &sc, &x) < 0) return protocol_error(L, x.status, x.msg);
  lua_remove(L, base + 1); /* the copy */
  buf_consume(&s->rbuf, (size_t)end);
  return lua_gettop(L) - base;
}

/*
** One attempt at the head or chunk on what is buffered: results, 0 to wait.
** The limits are read here, not before the first wait: a keep-alive
** request mostly finds the buffer empty at first.
*/
static int attempt(lua_State *L, csock_socket *s, int kind, scan *sc) {
  size_t len = buf_len(s->rbuf);
  const char *d = buf_data(s->rbuf);
  failure x = {0, NULL};
  limits lim;
  limits_from(L, &lim);
  if (kind == K_CHUNK) {
    if (sc->first == 0) { /* the chunk-size line */
      size_t used = 0;
      int64_t size = chunk_line(d, len, lua_toboolean(L, 3), lim.max_line, &used, &x);
      if (size == -2) return 0;
      if (size < 0) return protocol_error(L, x.status, x.msg);
      if (size > 0) {
        buf_consume(&s->rbuf, used);
        lua_settop(L, 0);
        lua_pushinteger(L, size);
        return 1;
      }
      sc->first = sc->pos = used; /* the last chunk: a trailer section follows */
    }
    long end = scan_head(d, len, sc, &lim);
    if (end == 0) return 0;
    if (end < 0) return protocol_error(L, 400, "bad trailer section");
    buf_consume(&s->rbuf, (size_t)end);
    lua_settop(L, 0);
    lua_pushinteger(L, 0);
    return 1;
  }
  if (kind == K_REQ) /* empty lines before a request are ignored (RFC 9112 2.2) */
    while (sc->pos == 0 && len >= 2 && d[0] == '\r' && d[1] == '\n') {
      buf_consume(&s->rbuf, 2);
      len -= 2;
      d = buf_data(s->rbuf);
    }
  long end = scan_head(d, len, sc, &lim);
  if (end == 0) return 0;
  if (end == -400 && kind == K_RES) return attempt_lenient_response(L, s, &lim);
  if (end < 0) {
    long st = -end;
    return protocol_error(L, (int)st,
                          st == 414   ? "request line too long"
                          : st == 431 ? "header section too large"
                                      : "bad line ending");
  }
  int base = lua_gettop(L);
  int n = kind == K_REQ ? parse_request(L, d, sc, &x) : parse_response(L, d, sc, &x);
  if (n < 0) return protocol_error(L, x.status, x.msg);
  buf_consume(&s->rbuf, (size_t)end);
  return lua_gettop(L) - base;
}

/* At end of stream: nothing buffered is a clean close, else a cut message. */
static int at_eof(lua_State *L, csock_socket *s, int kind) {
  if (buf_len(s->rbuf) == 0 && kind != K_CHUNK) {
    lua_settop(L, 0);
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  return protocol_error(L, 400, "incomplete message");
}

/*
** ctx: the kind (and CTX_IDLE).  Tries to parse what is buffered; fills and
** waits (through io.c's fill, so any transport under it works) until it
** can, or the deadline passes.
*/
static int http_k(lua_State *L, int status, lua_KContext ctx);

static int http_step(lua_State *L, csock_socket *s, int status, lua_KContext ctx) {
  int kind = CTX_KIND(ctx), e = 0;
  /* first pass: a chunk's timeout, or an idle connection's, is argument 2; a head's is 3 */
  double deadline = status == LUA_OK
                        ? deadline_in(L, s, kind == K_CHUNK || (ctx & CTX_IDLE) ? 2 : 3)
                        : loop_op_deadline(L);
  scan local;
  scan *sc = scan_state(L, &local);
  if (status == LUA_YIELD) e = loop_woken(L);
  if (e == 0 && s->fd < 0) e = EBADF;
  while (e == 0) {
    if (buf_len(s->rbuf) > 0) {
      if (ctx & CTX_IDLE) { /* the first byte came: the head has its own time from now on */
        ctx &= ~(lua_KContext)CTX_IDLE;
        deadline = deadline_in(L, s, 3);
      }
      int n = attempt(L, s, kind, sc);
      if (n > 0) return n;
    }
    if (s->eof) return at_eof(L, s, kind);
    int r = stream_fill(s, buf_len(s->rbuf));
    if (r >= 0) continue;
    if (r != -EAGAIN && r != -XPORT_WANT_WRITE) { /* a TLS read may have to write first */
      e = r;
      break;
    }
    sc = scan_save(L, sc);
    if (loop_waiting(&s->watch, CSOCK_READ) && loop_in_task(L))
      loop_read_end(L, s); /* loop_wait raises busy */
    e = loop_wait(L, &s->watch, r == -EAGAIN ? CSOCK_READ : CSOCK_WRITE, deadline, ctx, http_k);
  }
  return io_failure(L, s, e, buf_len(s->rbuf) > 0);
}

/*
** Stack: socket, 5 arguments, [scan state].  The parse holds the socket's
** read flag (loop_read_begin in begin_read) from its start to its result,
** waits included: the scan keeps offsets into the buffer and the parse
** pointers into it while it allocates, so no other read -- another task's,
** or a finalizer's -- may move the bytes meanwhile.
*/
static int http_k(lua_State *L, int status, lua_KContext ctx) {
  csock_socket *s = (csock_socket *)lua_touserdata(L, 1);
  int n = http_step(L, s, status, ctx);
  loop_read_end(L, s);
  return n;
}

static void begin_read(lua_State *L, csock_socket *s) {
  if (s->rbusy) luaL_error(L, "socket is busy: another task is reading from it");
  loop_read_begin(L, s);
}

static void check_timeout(lua_State *L, int arg) {
  if (lua_isnil(L, arg)) return;
  csock_checkduration(L, arg, csock_checknumber(L, arg), "timeout");
}

static void check_limit(lua_State *L, int arg) {
  csock_argcheck(L, csock_checkinteger(L, arg) > 0, arg, "limit must be positive");
}

/*
** The arguments csock.http passes with every head, checked in one pass:
** two timeouts that are numbers >= 0 (NaN fails the comparison) and three
** limits that are positive integers.  0 when any is not, or is nil or a
** convertible string: the checks that name what is wrong decide then.
*/
static int plain_args(lua_State *L) {
  for (int i = 2; i <= 3; i++)
    if (lua_type(L, i) != LUA_TNUMBER || !(lua_tonumber(L, i) >= 0)) return 0;
  for (int i = 4; i <= 6; i++)
    if (!lua_isinteger(L, i) || lua_tointeger(L, i) <= 0) return 0;
  return 1;
}

static int http_start(lua_State *L, int kind) {
  csock_socket *s = sock_checkopen(L, 1);
  lua_settop(L, 6);
  if (!plain_args(L)) {
    check_timeout(L, 2);
    check_timeout(L, 3);
    for (int i = 4; i <= 6; i++) check_limit(L, i);
  }
  int idle = kind == K_REQ && buf_len(s->rbuf) == 0;
  begin_read(L, s);
  return http_k(L, LUA_OK, kind | (idle ? CTX_IDLE : 0));
}

static int http_request_head(lua_State *L) { return http_start(L, K_REQ); }

static int http_response_head(lua_State *L) { return http_start(L, K_RES); }

static int http_chunk(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  lua_settop(L, 6);
  check_timeout(L, 2);
  for (int i = 4; i <= 6; i++) check_limit(L, i);
  begin_read(L, s);
  return http_k(L, LUA_OK, K_CHUNK);
}

static const luaL_Reg httpfuncs[] = {
    {"fields", http_fields},
    {NULL, NULL},
};

/* csock.core.http: what csock.http needs of C besides the socket methods. */
void http_open(lua_State *L) {
  luaL_newlib(L, httpfuncs);
  lua_setfield(L, -2, "http");
}

const luaL_Reg http_methods[] = {
    {"_httpreq", http_request_head},
    {"_httpres", http_response_head},
    {"_httpchunk", http_chunk},
    {NULL, NULL},
};
