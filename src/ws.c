/*
** ws.c - the byte work of WebSocket (RFC 6455) under lua/csock/websocket.lua:
** frame assembly with masking, unmasking, UTF-8 validation, and the SHA-1
** and base64 of the opening handshake.  The protocol (frame headers, the
** states, the handshake's HTTP) is Lua; what is here touches every byte of
** a payload, which Lua would do one string.byte at a time.
**
** The functions live in the table csock.core.ws (internal: websocket.lua is
** their one caller, and they check their arguments as any other function).
** SHA-1 is our own because csock.core does not link a crypto library; it
** only ever hashes a 60-byte handshake string.
*/
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "csock.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ---------------------------------------------------------------- SHA-1 */

typedef struct sha1_ctx {
  uint32_t h[5];
  unsigned char block[64];
  size_t used;    /* bytes waiting in block */
  uint64_t total; /* bytes hashed so far */
} sha1_ctx;

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(sha1_ctx *c, const unsigned char *p) {
  uint32_t w[80];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
           (uint32_t)p[4 * i + 3];
  for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  uint32_t a = c->h[0], b = c->h[1], d = c->h[3], e = c->h[4], cc = c->h[2];
  for (int i = 0; i < 80; i++) {
    uint32_t f, k;
    if (i < 20) {
      f = (b & cc) | (~b & d);
      k = 0x5A827999;
    } else if (i < 40) {
      f = b ^ cc ^ d;
      k = 0x6ED9EBA1;
    } else if (i < 60) {
      f = (b & cc) | (b & d) | (cc & d);
      k = 0x8F1BBCDC;
    } else {
      f = b ^ cc ^ d;
      k = 0xCA62C1D6;
    }
    uint32_t t = rol(a, 5) + f + e + k + w[i];
    e = d;
    d = cc;
    cc = rol(b, 30);
    b = a;
    a = t;
  }
  c->h[0] += a;
  c->h[1] += b;
  c->h[2] += cc;
  c->h[3] += d;
  c->h[4] += e;
}

static void sha1_init(sha1_ctx *c) {
  static const uint32_t h0[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  memcpy(c->h, h0, sizeof h0);
  c->used = 0;
  c->total = 0;
}

static void sha1_update(sha1_ctx *c, const void *data, size_t len) {
  const unsigned char *p = (const unsigned char *)data;
  c->total += len;
  while (len > 0) {
    size_t n = 64 - c->used < len ? 64 - c->used : len;
    memcpy(c->block + c->used, p, n);
    c->used += n;
    p += n;
    len -= n;
    if (c->used == 64) {
      sha1_block(c, c->block);
      c->used = 0;
    }
  }
}

static void sha1_final(sha1_ctx *c, unsigned char out[20]) {
  uint64_t bits = c->total * 8;
  unsigned char pad = 0x80;
  sha1_update(c, &pad, 1);
  pad = 0;
  while (c->used != 56) sha1_update(c, &pad, 1);
  unsigned char len[8];
  for (int i = 0; i < 8; i++) len[i] = (unsigned char)(bits >> (56 - 8 * i));
  sha1_update(c, len, 8);
  for (int i = 0; i < 20; i++) out[i] = (unsigned char)(c->h[i / 4] >> (24 - 8 * (i % 4)));
}

/* ---------------------------------------------------------------- base64 */

/* Writes the base64 of in[0, n) to out (4 * ceil(n / 3) bytes); returns that length. */
static size_t base64(const unsigned char *in, size_t n, char *out) {
  static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < n) v |= in[i + 2];
    out[o++] = digits[v >> 18 & 63];
    out[o++] = digits[v >> 12 & 63];
    out[o++] = (char)(i + 1 < n ? digits[v >> 6 & 63] : '=');
    out[o++] = (char)(i + 2 < n ? digits[v & 63] : '=');
  }
  return o;
}

/* ws.accept_key(key): base64(SHA-1(key .. GUID)), the Sec-WebSocket-Accept of key. */
static int ws_accept_key(lua_State *L) {
  size_t len;
  const char *key = csock_checklstring(L, 1, &len);
  sha1_ctx c;
  unsigned char digest[20];
  char out[28];
  sha1_init(&c);
  sha1_update(&c, key, len);
  sha1_update(&c, WS_GUID, sizeof WS_GUID - 1);
  sha1_final(&c, digest);
  lua_pushlstring(L, out, base64(digest, sizeof digest, out));
  return 1;
}

/* ws.sha1(data): the 20-byte SHA-1 digest of data (for the specs and the fuzz harness). */
static int ws_sha1(lua_State *L) {
  size_t len;
  const char *data = csock_checklstring(L, 1, &len);
  sha1_ctx c;
  unsigned char digest[20];
  sha1_init(&c);
  sha1_update(&c, data, len);
  sha1_final(&c, digest);
  lua_pushlstring(L, (const char *)digest, sizeof digest);
  return 1;
}

/* ---------------------------------------------------------------- randomness */

/*
** Masking keys and handshake keys.  RFC 6455 wants masking keys a script
** cannot predict; getrandom(2) per frame would cost a system call each, so
** a splitmix64 stream is seeded from it once per process (the pid is
** checked, so workers forked by `csock -w` do not share one stream).
*/
static uint64_t rng_state;
static pid_t rng_pid;

static uint64_t rng_next(void) {
  pid_t pid = getpid();
  if (pid != rng_pid) {
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
      seed = (uint64_t)(uintptr_t)&seed ^ (uint64_t)csock_now() * 1000003u;
    rng_state ^= seed ^ (uint64_t)pid;
    rng_pid = pid;
  }
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15u);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
  return z ^ (z >> 31);
}

/* ws.new_key(): a fresh Sec-WebSocket-Key, the base64 of 16 random bytes. */
static int ws_new_key(lua_State *L) {
  unsigned char raw[16];
  char out[24];
  if (getrandom(raw, sizeof raw, GRND_NONBLOCK) != (ssize_t)sizeof raw) {
    uint64_t a = rng_next(), b = rng_next();
    memcpy(raw, &a, 8);
    memcpy(raw + 8, &b, 8);
  }
  lua_pushlstring(L, out, base64(raw, sizeof raw, out));
  return 1;
}

/* ---------------------------------------------------------------- masking */

/* out[i] = in[i] ^ key[i % 4] for i in [0, n), eight bytes at a time. */
static void xor_mask(char *out, const char *in, size_t n, const unsigned char key[4]) {
  unsigned char k8[8];
  uint64_t k;
  for (int i = 0; i < 8; i++) k8[i] = key[i % 4];
  memcpy(&k, k8, 8);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    memcpy(&v, in + i, 8);
    v ^= k;
    memcpy(out + i, &v, 8);
  }
  for (; i < n; i++) out[i] = (char)(in[i] ^ key[i % 4]);
}

static void key_bytes(uint32_t key, unsigned char out[4]) {
  out[0] = (unsigned char)(key >> 24);
  out[1] = (unsigned char)(key >> 16);
  out[2] = (unsigned char)(key >> 8);
  out[3] = (unsigned char)key;
}

/*
** ws.unmask(data, key [, i]): data:sub(i) (i defaults to 1) XORed with the
** masking key, an integer whose four bytes, most significant first, are the
** key as it came on the wire (string.unpack(">I4", ...) gives it).  Lets
** the reader take the key and a short payload in one read and unmask
** without a data:sub copy.
*/
static int ws_unmask(lua_State *L) {
  size_t len;
  const char *data = csock_checklstring(L, 1, &len);
  lua_Integer key = csock_checkinteger(L, 2);
  lua_Integer i = csock_optinteger(L, 3, 1);
  csock_argcheck(L, key >= 0 && key <= 0xFFFFFFFF, 2, "key out of range");
  csock_argcheck(L, i >= 1 && (size_t)i <= len + 1, 3, "position out of range");
  size_t n = len - (size_t)(i - 1);
  unsigned char k[4];
  key_bytes((uint32_t)key, k);
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, n);
  xor_mask(out, data + (i - 1), n, k);
  luaL_pushresultsize(&b, n);
  return 1;
}

/* The header of a frame with first byte b1 and a payload of n bytes: its length. */
static size_t frame_header(unsigned char *h, int b1, size_t n, int masked) {
  size_t len;
  h[0] = (unsigned char)b1;
  if (n < 126) {
    h[1] = (unsigned char)n;
    len = 2;
  } else if (n <= 0xFFFF) {
    h[1] = 126;
    h[2] = (unsigned char)(n >> 8);
    h[3] = (unsigned char)n;
    len = 4;
  } else {
    h[1] = 127;
    for (int i = 0; i < 8; i++) h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    len = 10;
  }
  if (masked) h[1] |= 0x80;
  return len;
}

/*
** ws.frame(b1, data [, masked]): one whole frame as a string: the first
** byte b1 (FIN, RSV bits and opcode, as the caller composed them), the
** length, and data - masked with a fresh key when masked is true (a
** client's frames).  One string per frame, so a send is one write.
*/
static int ws_frame(lua_State *L) {
  lua_Integer b1 = csock_checkinteger(L, 1);
  size_t n;
  const char *data = csock_checklstring(L, 2, &n);
  int masked = lua_toboolean(L, 3);
  csock_argcheck(L, b1 >= 0 && b1 <= 255, 1, "first byte out of range");
  unsigned char h[14];
  size_t hlen = frame_header(h, (int)b1, n, masked);
  unsigned char key[4];
  if (masked) {
    key_bytes((uint32_t)rng_next(), key);
    memcpy(h + hlen, key, 4);
    hlen += 4;
  }
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, hlen + n);
  memcpy(out, h, hlen);
  if (masked)
    xor_mask(out + hlen, data, n, key);
  else
    memcpy(out + hlen, data, n);
  luaL_pushresultsize(&b, hlen + n);
  return 1;
}

/* ---------------------------------------------------------------- UTF-8 */

/*
** Whether s[0, n) is well-formed UTF-8 (RFC 3629): no overlong forms, no
** surrogates, nothing above U+10FFFF, no truncated sequence.  ASCII runs go
** eight bytes at a time.
*/
static int utf8_valid(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (i + 8 <= n) {
      uint64_t v;
      memcpy(&v, s + i, 8);
      if ((v & 0x8080808080808080u) == 0) {
        i += 8;
        continue;
      }
    }
    unsigned c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t need;
    unsigned lo = 0x80, hi = 0xBF; /* the range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0) lo = 0xA0; /* overlong */
      if (c == 0xED) hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0) lo = 0x90; /* overlong */
      if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
    } else {
      return 0;
    }
    if (n - i <= need) return 0;
    if (s[i + 1] < lo || s[i + 1] > hi) return 0;
    for (size_t k = 2; k <= need; k++)
      if ((s[i + k] & 0xC0) != 0x80) return 0;
    i += need + 1;
  }
  return 1;
}

/* ws.utf8(s): whether s is well-formed UTF-8. */
static int ws_utf8(lua_State *L) {
  size_t n;
  const char *s = csock_checklstring(L, 1, &n);
  lua_pushboolean(L, utf8_valid((const unsigned char *)s, n));
  return 1;
}

static const luaL_Reg wsfuncs[] = {
    {"accept_key", ws_accept_key},
    {"sha1", ws_sha1},
    {"new_key", ws_new_key},
    {"unmask", ws_unmask},
    {"frame", ws_frame},
    {"utf8", ws_utf8},
    {NULL, NULL},
};

/* Sets csock.core.ws, the table above, in the module table at the top of the stack. */
void ws_open(lua_State *L) {
  luaL_newlib(L, wsfuncs);
  lua_setfield(L, -2, "ws");
}
