/*
** ws.c - the byte work of WebSocket (RFC 6455) under lua/csock/websocket.lua:
** frame assembly with masking, unmasking, UTF-8 validation, and the
** opening handshake's keys (SHA-1 and base64 from libcrypto, which tls.c
** links anyway).  The protocol (frame headers, the states, the handshake's
** HTTP) is Lua; what is here touches every byte of a payload, which Lua
** would do one string.byte at a time.
**
** The functions live in the table csock.core.ws (internal: websocket.lua is
** their one caller, and they check their arguments as any other function).
*/
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "csock.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ---------------------------------------------------------------- handshake */

/* Pushes the base64 of in[0, n) (n <= 48). */
static void push_base64(lua_State *L, const unsigned char *in, size_t n) {
  char out[65];
  int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
  lua_pushlstring(L, out, (size_t)len);
}

/* ws.accept_key(key): base64(SHA-1(key .. GUID)), the Sec-WebSocket-Accept of key. */
static int ws_accept_key(lua_State *L) {
  size_t len;
  const char *key = csock_checklstring(L, 1, &len);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, key, len);
  luaL_addstring(&b, WS_GUID);
  luaL_pushresult(&b);
  const char *text = lua_tolstring(L, -1, &len);
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1((const unsigned char *)text, len, digest);
  push_base64(L, digest, sizeof digest);
  return 1;
}

/* ws.sha1(data): the 20-byte SHA-1 digest of data (for the specs and the fuzz harness). */
static int ws_sha1(lua_State *L) {
  size_t len;
  const char *data = csock_checklstring(L, 1, &len);
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1((const unsigned char *)data, len, digest);
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
  if (getrandom(raw, sizeof raw, GRND_NONBLOCK) != (ssize_t)sizeof raw) {
    uint64_t a = rng_next(), b = rng_next();
    memcpy(raw, &a, 8);
    memcpy(raw + 8, &b, 8);
  }
  push_base64(L, raw, sizeof raw);
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
