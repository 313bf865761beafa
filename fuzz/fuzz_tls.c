/*
** fuzz/fuzz_tls.c - libFuzzer harness over the TLS transport (src/tls.c).
**
** Each input gets a fresh lua_State with csock.core and a socketpair: csock
** owns one end (b, timeout 0, so every call returns at once), this file
** plays the peer on the other (a's descriptor).  Byte 0 picks the case:
**
**   0  the payload is what a client sends to a csock server: starttls is
**      driven (and resumed after each timeout) as the bytes come in pieces,
**      then the end of stream; then a read.  It may fail, never crash.
**   1  the same with csock as the client (insecure) and the payload as the
**      server's answer.
**   2  a real session: an OpenSSL client here finishes a handshake with
**      the csock server, then the payload is a list of steps - a record
**      the client encrypts, raw bytes under the TLS layer, read(n), or the
**      end of stream and read("a").  While no raw bytes went in, every
**      read must give exactly the plaintext sent, in order (a byte lost,
**      repeated or a read that comes back short aborts); after raw bytes
**      anything but a crash, a leak or a hang is fine.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

int luaopen_csock_core(lua_State *L);

#define MAX_EXPECT 16384

static const char driver[] =
    "local csock, cert, key = ...\n"
    "local sctx = csock.tls_context {mode = 'server', certificate = cert, key = key}\n"
    "local cctx = csock.tls_context {insecure = true}\n"
    "local a, b = assert(csock.socketpair())\n"
    "a:settimeout(0); b:settimeout(0)\n"
    "local M = {}\n"
    "function M.fd() return a:fileno() end\n"
    /* 'done', or the error message ('timeout' while it waits) */
    "function M.handshake(client)\n"
    "  local ok, err\n"
    "  if client then ok, err = b:starttls(cctx, 'localhost') else ok, err = b:starttls(sctx) end\n"
    "  return ok and 'done' or err\n"
    "end\n"
    "function M.read(f) return b:read(f) end\n"
    "function M.close() b:close(); a:close() end\n"
    "return M\n";

static char cert_path[64], key_path[64];
static SSL_CTX *peer_client;

/* A self-signed P-256 certificate for the csock server, made once. */
static void make_certificate(void) {
  EVP_PKEY *k = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  if (k == NULL || x == NULL) abort();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, k);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                             (const unsigned char *)"localhost", -1, -1, 0);
  X509_set_issuer_name(x, X509_get_subject_name(x));
  if (X509_sign(x, k, EVP_sha256()) == 0) abort();
  snprintf(cert_path, sizeof cert_path, "/tmp/fuzz_tls_cert_%d.pem", (int)getpid());
  snprintf(key_path, sizeof key_path, "/tmp/fuzz_tls_key_%d.pem", (int)getpid());
  FILE *f = fopen(cert_path, "w");
  if (f == NULL || PEM_write_X509(f, x) != 1) abort();
  fclose(f);
  f = fopen(key_path, "w");
  if (f == NULL || PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) != 1) abort();
  fclose(f);
  X509_free(x);
  EVP_PKEY_free(k);
}

static void remove_certificate(void) {
  unlink(cert_path);
  unlink(key_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  make_certificate();
  atexit(remove_certificate);
  peer_client = SSL_CTX_new(TLS_client_method());
  if (peer_client == NULL) abort();
  SSL_CTX_set_verify(peer_client, SSL_VERIFY_NONE, NULL);
  return 0;
}

/* Calls M[name](args...) with nargs arguments already pushed; leaves nres results. */
static void call(lua_State *L, const char *name, int nargs, int nres) {
  lua_getfield(L, 1, name);
  lua_insert(L, -1 - nargs);
  if (lua_pcall(L, nargs, nres, 0) != LUA_OK) {
    fprintf(stderr, "fuzz_tls: %s raised: %s\n", name, lua_tostring(L, -1));
    abort();
  }
}

static void handshake(lua_State *L, int client) {
  lua_pushboolean(L, client);
  call(L, "handshake", 1, 0);
}

/* Cases 0 and 1: the payload as the peer's handshake bytes, in pieces. */
static void fuzz_handshake(lua_State *L, int fd, int client, const uint8_t *p, size_t n) {
  size_t off = 0, piece = n / 3 + 1;
  while (off < n) {
    size_t k = n - off < piece ? n - off : piece;
    if (write(fd, p + off, k) < 0) break;
    off += k;
    handshake(L, client);
  }
  shutdown(fd, SHUT_WR);
  handshake(L, client);
  lua_pushliteral(L, "a");
  call(L, "read", 1, 0);
}

/* Both ends step the handshake until both are done: 1, or 0 if they never are. */
static int session_start(lua_State *L, SSL *c) {
  for (int i = 0; i < 20; i++) {
    int r = SSL_do_handshake(c);
    lua_pushboolean(L, 0);
    call(L, "handshake", 1, 1);
    int done = strcmp(lua_tostring(L, -1), "done") == 0;
    lua_pop(L, 1);
    if (r == 1 && done) return 1;
  }
  return 0;
}

typedef struct expect {
  char data[MAX_EXPECT];
  size_t len;  /* plaintext sent and not read yet */
  int garbled; /* raw bytes went in: no more exact checks */
} expect;

/* read(f) must give the next bytes sent (want of them), exactly. */
static void check_read(lua_State *L, expect *e, size_t want, int all) {
  if (all)
    lua_pushliteral(L, "a");
  else
    lua_pushinteger(L, (lua_Integer)want);
  call(L, "read", 1, 2);
  size_t got = 0;
  const char *s = lua_tolstring(L, -2, &got);
  if (!e->garbled) {
    size_t due = all || want > e->len ? e->len : want;
    int ok = all || want <= e->len ? s != NULL && got == due && memcmp(s, e->data, due) == 0
                                   : s == NULL; /* short: a timeout, nothing taken */
    if (!ok) {
      fprintf(stderr, "fuzz_tls: read(%zu) gave %zu bytes, %zu were due\n", want, got, due);
      abort();
    }
    if (s != NULL) {
      memmove(e->data, e->data + got, e->len - got);
      e->len -= got;
    }
  }
  lua_pop(L, 2);
}

/* Case 2: steps of (control byte, length byte, bytes) over an established session. */
static void fuzz_session(lua_State *L, int fd, const uint8_t *p, size_t n) {
  SSL *c = SSL_new(peer_client);
  SSL_set_fd(c, fd);
  SSL_set_connect_state(c);
  expect *e = (expect *)calloc(1, sizeof *e);
  if (c == NULL || e == NULL) abort();
  if (!session_start(L, c)) {
    fprintf(stderr, "fuzz_tls: the handshake did not finish\n");
    abort();
  }
  size_t i = 0;
  while (i + 2 <= n) {
    int op = p[i] & 3, arg = p[i] >> 2;
    size_t len = p[i + 1] + 1u;
    i += 2;
    if (len > n - i) len = n - i;
    if (op == 0 && len > 0 && e->len + len <= MAX_EXPECT) { /* a record */
      if (SSL_write(c, p + i, (int)len) != (int)len) break;
      memcpy(e->data + e->len, p + i, len);
      e->len += len;
      i += len;
    } else if (op == 1 && len > 0) { /* raw bytes under TLS */
      if (write(fd, p + i, len) < 0) break;
      e->garbled = 1;
      i += len;
    } else if (op == 2) {
      check_read(L, e, (size_t)arg + 1, 0);
    } else if (op == 3) {
      shutdown(fd, SHUT_WR);
      check_read(L, e, 0, 1);
      break;
    }
  }
  SSL_free(c);
  free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "csock.core", luaopen_csock_core, 0);
  if (luaL_loadbuffer(L, driver, sizeof driver - 1, "=driver") != LUA_OK) abort();
  lua_insert(L, -2);
  lua_pushstring(L, cert_path);
  lua_pushstring(L, key_path);
  if (lua_pcall(L, 3, 1, 0) != LUA_OK) {
    fprintf(stderr, "fuzz_tls: driver: %s\n", lua_tostring(L, -1));
    abort();
  }
  call(L, "fd", 0, 1);
  int fd = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  switch (data[0] % 3) {
    case 0: fuzz_handshake(L, fd, 0, data + 1, size - 1); break;
    case 1: fuzz_handshake(L, fd, 1, data + 1, size - 1); break;
    default: fuzz_session(L, fd, data + 1, size - 1); break;
  }
  call(L, "close", 0, 0);
  lua_close(L);
  return 0;
}
