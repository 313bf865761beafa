/*
** tls.c - TLS over csock's stream sockets (OpenSSL 3): contexts
** (csock.tls_context), the handshake (s:starttls), s:tlsinfo, and the TLS
** transport that io.c reads and writes through once a socket has one.
**
** OpenSSL talks to the descriptor through a BIO of our own (recv/send with
** MSG_NOSIGNAL, so a peer gone away never raises SIGPIPE; and the bytes
** read ahead before starttls are handed over first).  With edge-triggered
** epoll a task may park only after OpenSSL saw EAGAIN (WANT_READ): it may
** hold decrypted bytes no edge will announce, so a read takes what
** SSL_read_ex gives and marks the socket drained only on WANT_READ.
**
** A failure kills the session: its message (OpenSSL's reason, with the
** verification result for a handshake) is kept and given, with EPROTO, by
** every later call (tls_message, through stream_error), and OpenSSL's
** error queue is emptied, so that no other socket reads it as its own.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <strings.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "csock.h"

#define CSOCK_TLS_CONTEXT "csock.tls_context"

/* ---------------------------------------------------------------- contexts */

typedef struct tls_server { /* one entry of `servers`: SNI name -> context */
  char *name;
  SSL_CTX *ctx;
} tls_server;

/*
** What a context knows beyond its SSL_CTX.  It hangs on the SSL_CTX as ex
** data and goes when the last SSL_CTX reference does: a connection may
** outlive the Lua value of its context, and the callbacks below use this.
*/
typedef struct tls_conf {
  int server, verify, insecure;
  unsigned char *alpn; /* ALPN wire format: length-prefixed names */
  unsigned alpn_len;
  tls_server *servers;
  size_t nservers;
} tls_conf;

typedef struct tls_ctx { /* the userdata */
  SSL_CTX *ctx;
  tls_conf *conf;
} tls_ctx;

static int conf_index = -1;

static void conf_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
  (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
  tls_conf *c = (tls_conf *)ptr;
  if (c == NULL) return;
  for (size_t i = 0; i < c->nservers; i++) {
    free(c->servers[i].name);
    SSL_CTX_free(c->servers[i].ctx);
  }
  free(c->servers);
  free(c->alpn);
  free(c);
}

static tls_ctx *ctx_check(lua_State *L, int idx) {
  tls_ctx *c = (tls_ctx *)csock_checkudata(L, idx, CSOCK_TLS_CONTEXT);
  return c;
}

static int ctx_gc(lua_State *L) {
  tls_ctx *c = (tls_ctx *)luaL_checkudata(L, 1, CSOCK_TLS_CONTEXT);
  SSL_CTX_free(c->ctx); /* connections hold their own references */
  c->ctx = NULL;
  return 0;
}

static int ctx_tostring(lua_State *L) {
  tls_ctx *c = (tls_ctx *)luaL_checkudata(L, 1, CSOCK_TLS_CONTEXT);
  if (c->ctx == NULL || c->conf == NULL)
    lua_pushliteral(L, "csock TLS context (closed)");
  else
    lua_pushfstring(L, "csock TLS context (%s)", c->conf->server ? "server" : "client");
  return 1;
}

/* The reason of OpenSSL's earliest queued error, or dflt. */
static const char *ssl_reason(const char *dflt) {
  const char *r = ERR_reason_error_string(ERR_peek_error());
  return r != NULL ? r : dflt;
}

/*
** The reason of a failed connection, emptying OpenSSL's error queue: the
** last entry of the SSL library, which names the protocol's view ("decryption
** failed or bad record mac") where the entries before it name a cause deeper
** down ("cipher operation failed"); else the earliest entry; else dflt.
*/
static const char *conn_reason(const char *dflt) {
  unsigned long e, first = 0, ssl = 0;
  while ((e = ERR_get_error()) != 0) {
    if (first == 0) first = e;
    if (ERR_GET_LIB(e) == ERR_LIB_SSL) ssl = e;
  }
  const char *r = ERR_reason_error_string(ssl != 0 ? ssl : first);
  return r != NULL ? r : dflt;
}

/* A bad option is a programming error: "bad argument #1 to 'tls_context' (...)". */
static int ctx_error(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const char *msg = lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  ERR_clear_error();
  return csock_argerror(L, 1, msg);
}

/* Raises "... (option 'name': what 'file' (why))". */
static int opt_error(lua_State *L, const char *name, const char *what, const char *file,
                     const char *why) {
  return ctx_error(L, "option '%s': %s '%s' (%s)", name, what, file, why);
}

/* Argument 1's field name, as a string or NULL when absent. */
static const char *opt_string(lua_State *L, const char *name) {
  int t = lua_getfield(L, 1, name);
  lua_pop(L, 1);
  if (t == LUA_TNIL) return NULL;
  if (t != LUA_TSTRING)
    ctx_error(L, "option '%s' must be a string, got %s", name, lua_typename(L, t));
  lua_getfield(L, 1, name);
  const char *v = lua_tostring(L, -1); /* the table keeps it alive */
  lua_pop(L, 1);
  return v;
}

static int opt_bool(lua_State *L, const char *name, int dflt) {
  int t = lua_getfield(L, 1, name);
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (t == LUA_TNIL) return dflt;
  if (t != LUA_TBOOLEAN)
    ctx_error(L, "option '%s' must be a boolean, got %s", name, lua_typename(L, t));
  return v;
}

/* A file the option names must be readable: say so before OpenSSL's vaguer reason. */
static void check_readable(lua_State *L, const char *name, const char *file) {
  FILE *f = fopen(file, "r");
  if (f == NULL) return (void)opt_error(L, name, "cannot read", file, strerror(errno));
  fclose(f);
}

/* capath is a directory OpenSSL reads lazily, at the first handshake: check it now. */
static void check_readable_dir(lua_State *L, const char *name, const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return (void)opt_error(L, name, "cannot read", dir, strerror(errno));
  closedir(d);
}

static const char *const known_opts[] = {
    "mode", "certificate", "key",     "cafile",       "capath",  "verify", "insecure",
    "alpn", "min_version", "ciphers", "ciphersuites", "servers", NULL};

static void check_known(lua_State *L) {
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    lua_pop(L, 1);
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    int i = 0;
    while (k != NULL && known_opts[i] != NULL && strcmp(known_opts[i], k) != 0) i++;
    if (k == NULL || known_opts[i] == NULL)
      return (void)ctx_error(L, "unknown option '%s'", k ? k : luaL_typename(L, -1));
  }
}

static void ctx_certificates(lua_State *L, tls_ctx *c) {
  const char *cert = opt_string(L, "certificate"), *key = opt_string(L, "key");
  if (c->conf->server && (cert == NULL || key == NULL))
    return (void)ctx_error(L, "a server needs options 'certificate' and 'key'");
  if (cert == NULL && key == NULL) return;
  if (cert == NULL || key == NULL)
    return (void)ctx_error(L, "option '%s' needs option '%s'", cert ? "certificate" : "key",
                           cert ? "key" : "certificate");
  check_readable(L, "certificate", cert);
  check_readable(L, "key", key);
  if (SSL_CTX_use_certificate_chain_file(c->ctx, cert) != 1)
    return (void)opt_error(L, "certificate", "cannot use", cert, ssl_reason("no certificate"));
  if (SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(c->ctx) != 1) {
    if (ERR_GET_REASON(ERR_peek_error()) == X509_R_KEY_VALUES_MISMATCH || ERR_peek_error() == 0) {
      ERR_clear_error();
      return (void)ctx_error(L, "option 'key': '%s' does not match the certificate '%s'", key,
                             cert);
    }
    return (void)opt_error(L, "key", "cannot use", key, ssl_reason("no key"));
  }
}

static void ctx_verify_paths(lua_State *L, tls_ctx *c) {
  const char *cafile = opt_string(L, "cafile"), *capath = opt_string(L, "capath");
  if (cafile) check_readable(L, "cafile", cafile);
  if (capath) check_readable_dir(L, "capath", capath);
  if (cafile || capath) {
    if (SSL_CTX_load_verify_locations(c->ctx, cafile, capath) != 1)
      return (void)opt_error(L, cafile ? "cafile" : "capath", "cannot load",
                             cafile ? cafile : capath, ssl_reason("no certificates"));
  } else if (c->conf->verify && !c->conf->insecure) {
    SSL_CTX_set_default_verify_paths(c->ctx);
  }
  if (c->conf->server && c->conf->verify && cafile) {
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cafile);
    if (names != NULL) SSL_CTX_set_client_CA_list(c->ctx, names);
  }
  ERR_clear_error();
}

/*
** Pushes the ALPN wire format (length-prefixed names) of the list at idx.
** Returns 0, or the position of an entry that is no name of 1 to 255 bytes
** (then nothing is pushed).
*/
static lua_Integer push_alpn_wire(lua_State *L, int idx) {
  luaL_Buffer b;
  idx = lua_absindex(L, idx);
  luaL_buffinit(L, &b);
  lua_Integer n = luaL_len(L, idx);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, idx, i);
    size_t len;
    const char *p = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    if (p == NULL || len == 0 || len > 255) {
      lua_pop(L, 1);
      luaL_pushresult(&b);
      lua_pop(L, 1);
      return i;
    }
    lua_pop(L, 1);
    luaL_addchar(&b, (char)len);
    luaL_addlstring(&b, p, len);
  }
  luaL_pushresult(&b);
  return 0;
}

/* alpn = {"h2", "http/1.1"}: the wire format, 1..255 bytes a name. */
static void ctx_alpn(lua_State *L, tls_ctx *c) {
  int t = lua_getfield(L, 1, "alpn");
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  if (t != LUA_TTABLE) return (void)ctx_error(L, "option 'alpn' must be a list of strings");
  lua_Integer bad = push_alpn_wire(L, -1);
  if (bad != 0)
    return (void)ctx_error(L, "option 'alpn': entry %d must be a name of 1 to 255 bytes", (int)bad);
  size_t len;
  const char *wire = lua_tolstring(L, -1, &len);
  if (len > 0) {
    c->conf->alpn = (unsigned char *)malloc(len);
    if (c->conf->alpn == NULL) return (void)luaL_error(L, "not enough memory");
    memcpy(c->conf->alpn, wire, len);
    c->conf->alpn_len = (unsigned)len;
    if (!c->conf->server && SSL_CTX_set_alpn_protos(c->ctx, c->conf->alpn, (unsigned)len) != 0)
      return (void)ctx_error(L, "option 'alpn': %s", ssl_reason("rejected"));
  }
  lua_pop(L, 2);
}

/* The server picks the first of its names the client offers. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg) {
  (void)ssl;
  const tls_conf *c = (const tls_conf *)arg;
  unsigned char *o = NULL;
  if (c->alpn == NULL ||
      SSL_select_next_proto(&o, outlen, c->alpn, c->alpn_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = o;
  return SSL_TLSEXT_ERR_OK;
}

/* Switches the connection to the context `servers` names for the client's SNI. */
static int sni_select(SSL *ssl, int *al, void *arg) {
  (void)al;
  const tls_conf *c = (const tls_conf *)arg;
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  for (size_t i = 0; name != NULL && i < c->nservers; i++) {
    if (strcasecmp(name, c->servers[i].name) == 0) {
      SSL_set_SSL_CTX(ssl, c->servers[i].ctx);
      SSL_set_verify(ssl, SSL_CTX_get_verify_mode(c->servers[i].ctx), NULL);
      break;
    }
  }
  return SSL_TLSEXT_ERR_OK;
}

static void ctx_servers(lua_State *L, tls_ctx *c) {
  int t = lua_getfield(L, 1, "servers");
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  if (!c->conf->server) return (void)ctx_error(L, "option 'servers' is for servers");
  if (t != LUA_TTABLE)
    return (void)ctx_error(L, "option 'servers' must be a table of name = context");
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    tls_ctx *sc = (tls_ctx *)luaL_testudata(L, -1, CSOCK_TLS_CONTEXT);
    if (lua_type(L, -2) != LUA_TSTRING || sc == NULL || sc->ctx == NULL || !sc->conf->server)
      return (void)ctx_error(L, "option 'servers' must map names to server contexts");
    tls_server *grown =
        (tls_server *)realloc(c->conf->servers, (c->conf->nservers + 1) * sizeof *grown);
    if (grown == NULL) return (void)luaL_error(L, "not enough memory");
    c->conf->servers = grown;
    char *name = strdup(lua_tostring(L, -2));
    if (name == NULL) return (void)luaL_error(L, "not enough memory");
    SSL_CTX_up_ref(sc->ctx);
    grown[c->conf->nservers].name = name;
    grown[c->conf->nservers].ctx = sc->ctx;
    c->conf->nservers++;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  SSL_CTX_set_tlsext_servername_callback(c->ctx, sni_select);
  SSL_CTX_set_tlsext_servername_arg(c->ctx, c->conf);
}

static void ctx_protocol(lua_State *L, tls_ctx *c) {
  const char *v = opt_string(L, "min_version");
  int min = TLS1_2_VERSION;
  if (v != NULL && strcmp(v, "tls1.3") == 0)
    min = TLS1_3_VERSION;
  else if (v != NULL && strcmp(v, "tls1.2") != 0)
    return (void)ctx_error(L, "option 'min_version' must be \"tls1.2\" or \"tls1.3\", not '%s'", v);
  SSL_CTX_set_min_proto_version(c->ctx, min);
  const char *ciphers = opt_string(L, "ciphers");
  if (ciphers && SSL_CTX_set_cipher_list(c->ctx, ciphers) != 1)
    return (void)ctx_error(L, "option 'ciphers': no cipher matches '%s'", ciphers);
  const char *suites = opt_string(L, "ciphersuites");
  if (suites && SSL_CTX_set_ciphersuites(c->ctx, suites) != 1)
    return (void)ctx_error(L, "option 'ciphersuites': no cipher suite matches '%s'", suites);
  ERR_clear_error();
}

static void ctx_mode(lua_State *L, tls_ctx *c) {
  const char *mode = opt_string(L, "mode");
  if (mode != NULL && strcmp(mode, "server") != 0 && strcmp(mode, "client") != 0)
    return (void)ctx_error(L, "option 'mode' must be \"client\" or \"server\", not '%s'", mode);
  c->conf->server = mode != NULL && strcmp(mode, "server") == 0;
  c->conf->verify = opt_bool(L, "verify", !c->conf->server);
  c->conf->insecure = opt_bool(L, "insecure", 0);
  if (c->conf->server && c->conf->insecure)
    return (void)ctx_error(L, "option 'insecure' is for clients");
}

/* csock.tls_context(opts) */
int tls_context(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  csock_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  check_known(L);
  /* OpenSSL initialises itself here, on first use, not when csock loads:
     a process that never makes a context does not pay its memory */
  if (conf_index < 0) conf_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, conf_free);
  tls_ctx *c = (tls_ctx *)lua_newuserdatauv(L, sizeof *c, 0);
  c->ctx = NULL;
  luaL_setmetatable(L, CSOCK_TLS_CONTEXT);
  ERR_clear_error();
  c->ctx = SSL_CTX_new(TLS_method());
  tls_conf *conf = (tls_conf *)calloc(1, sizeof *conf);
  if (c->ctx == NULL || conf == NULL || SSL_CTX_set_ex_data(c->ctx, conf_index, conf) != 1) {
    free(conf);
    return ctx_error(L, "%s", ssl_reason("not enough memory"));
  }
  c->conf = conf;
  ctx_mode(L, c);
  SSL_CTX_set_options(c->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                               SSL_MODE_RELEASE_BUFFERS);
  /* AUTO_RETRY stays on: without it SSL_read reports WANT_READ after a
     session ticket with more bytes waiting, and a task would park on an
     edge that never comes */
  ctx_protocol(L, c);
  ctx_certificates(L, c);
  ctx_verify_paths(L, c);
  ctx_alpn(L, c);
  ctx_servers(L, c);
  if (conf->server) {
    static const unsigned char sid[] = "csock";
    SSL_CTX_set_session_id_context(c->ctx, sid, sizeof sid - 1);
    SSL_CTX_set_alpn_select_cb(c->ctx, alpn_select, conf);
    if (conf->verify)
      SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  } else {
    SSL_CTX_set_verify(c->ctx, conf->verify && !conf->insecure ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                       NULL);
  }
  return 1;
}

/* ---------------------------------------------------------------- the BIO */

/*
** Every idle TLS connection holds one: 56 bytes, a 64-byte malloc block
** (lengths in 32 bits: the bytes read ahead and a pending record are far
** below 4 GiB).
*/
struct csock_tls {
  csock_xport base; /* first: the socket's xport points here */
  SSL *ssl;
  char *pre;  /* bytes read ahead before starttls: the peer's first TLS bytes */
  char *pend; /* plaintext OpenSSL made a record of and must be given again */
  char *why;  /* once dead: the message of every failure from then on (malloc'd) */
  int fd;
  int err; /* errno of the BIO's last failed recv/send */
  uint32_t pre_len, pre_pos;
  uint32_t pend_len;  /* at most XPORT_CHUNK */
  unsigned eof : 1;   /* recv returned 0 */
  unsigned done : 1;  /* the handshake finished */
  unsigned dead : 1;  /* a fatal error: no close_notify, no more records */
  unsigned check : 1; /* the peer's certificate is verified (tlsinfo.verified) */
};

/* s's TLS state, or NULL: TLS is the one transport, so s->xport is a csock_tls when set. */
static struct csock_tls *tls_of(const csock_socket *s) { return (struct csock_tls *)s->xport; }

static int bio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static int bio_read(BIO *b, char *p, int n) {
  struct csock_tls *t = (struct csock_tls *)BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (t->pre != NULL) {
    size_t k = t->pre_len - t->pre_pos < (size_t)n ? t->pre_len - t->pre_pos : (size_t)n;
    memcpy(p, t->pre + t->pre_pos, k);
    t->pre_pos += (uint32_t)k;
    if (t->pre_pos == t->pre_len) {
      free(t->pre);
      t->pre = NULL;
    }
    return (int)k;
  }
  for (;;) {
    ssize_t r = recv(t->fd, p, (size_t)n, 0);
    if (r >= 0) {
      if (r == 0) t->eof = 1;
      return (int)r;
    }
    if (errno == EINTR) continue;
    t->err = errno;
    if (errno == EAGAIN) BIO_set_retry_read(b);
    return -1;
  }
}

static int bio_write(BIO *b, const char *p, int n) {
  struct csock_tls *t = (struct csock_tls *)BIO_get_data(b);
  BIO_clear_retry_flags(b);
  for (;;) {
    ssize_t w = send(t->fd, p, (size_t)n, MSG_NOSIGNAL);
    if (w >= 0) return (int)w;
    if (errno == EINTR) continue;
    t->err = errno;
    if (errno == EAGAIN) BIO_set_retry_write(b);
    return -1;
  }
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)num, (void)ptr;
  const struct csock_tls *t = (const struct csock_tls *)BIO_get_data(b);
  switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;
    case BIO_CTRL_EOF: return t != NULL && t->eof;
    default: return 0;
  }
}

/*
** One BIO_METHOD for the process, freed when the last Lua state that
** loaded csock closes (the library may be unloaded then).
*/
static BIO_METHOD *bio_method;
static int bio_users;

static int bio_release(lua_State *L) {
  (void)L;
  if (--bio_users == 0 && bio_method != NULL) {
    BIO_meth_free(bio_method);
    bio_method = NULL;
  }
  return 0;
}

static BIO_METHOD *csock_bio(void) {
  if (bio_method != NULL) return bio_method;
  BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "csock socket");
  if (m == NULL) return NULL;
  BIO_meth_set_create(m, bio_create);
  BIO_meth_set_read(m, bio_read);
  BIO_meth_set_write(m, bio_write);
  BIO_meth_set_ctrl(m, bio_ctrl);
  bio_method = m;
  return m;
}

/* ---------------------------------------------------------------- the transport */

/*
** Marks t dead with message why (copied: the next calls report it too) and
** empties OpenSSL's error queue, which is the thread's, not t's: a stale
** entry would show up as the next socket's failure.  -EPROTO.
*/
static long tls_dead(struct csock_tls *t, const char *why) {
  t->dead = 1;
  if (t->why == NULL) t->why = strdup(why); /* NULL: "TLS failed on this socket" */
  ERR_clear_error();
  return -EPROTO;
}

/* The message of a failure the transport reported: OpenSSL's reason for EPROTO. */
static const char *tls_message(const csock_socket *s, int err) {
  const struct csock_tls *t = tls_of(s);
  if (err != EPROTO || t == NULL || !t->dead) return NULL;
  return t->why != NULL ? t->why : "TLS failed on this socket";
}

/*
** What a failed SSL call means for io.c.  WANT_* marks the direction
** drained: the BIO saw EAGAIN there, so an edge will come.  A read at the
** peer's close_notify, or at its plain FIN, is the end of the stream.
*/
static long tls_failed(csock_socket *s, int ssl_err, int reading) {
  struct csock_tls *t = tls_of(s);
  switch (ssl_err) {
    case SSL_ERROR_WANT_READ: loop_blocked(&s->watch, CSOCK_READ); return -XPORT_WANT_READ;
    case SSL_ERROR_WANT_WRITE: loop_blocked(&s->watch, CSOCK_WRITE); return -XPORT_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN: return reading ? 0 : -EPIPE;
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error() != 0) return tls_dead(t, conn_reason("TLS failed"));
      t->dead = 1;
      if (t->err != 0 && t->err != EAGAIN) return -t->err;
      return reading ? 0 : -EPIPE;
    default: return tls_dead(t, conn_reason("TLS failed"));
  }
}

/*
** WANT_READ is worth parking on only when the BIO saw EAGAIN: anything else
** (a record that was not data) means try again at once.
*/
#define TLS_RETRIES 8

static long tls_recv(csock_socket *s, char *p, size_t n) {
  struct csock_tls *t = tls_of(s);
  if (t->dead) return -EPROTO;
  for (int i = 0;; i++) {
    size_t got = 0;
    ERR_clear_error();
    t->err = 0;
    int r = SSL_read_ex(t->ssl, p, n, &got);
    if (r == 1) return (long)got;
    int e = SSL_get_error(t->ssl, r);
    if (e != SSL_ERROR_WANT_READ || t->err == EAGAIN || i == TLS_RETRIES)
      return tls_failed(s, e, 1);
  }
}

/* Gives OpenSSL the bytes of its pending record again: 0 once all went. */
static long tls_flush(csock_socket *s) {
  struct csock_tls *t = tls_of(s);
  while (t->pend_len > 0) {
    size_t w = 0;
    ERR_clear_error();
    t->err = 0;
    int r = SSL_write_ex(t->ssl, t->pend, t->pend_len, &w);
    if (r != 1) return tls_failed(s, SSL_get_error(t->ssl, r), 0);
    memmove(t->pend, t->pend + w, t->pend_len - w);
    t->pend_len -= (uint32_t)w;
  }
  free(t->pend);
  t->pend = NULL;
  return 0;
}

/*
** One record at most.  When SSL_write_ex cannot finish, OpenSSL has (or
** will have) made a record of these bytes and must be given them again,
** while the caller may time out and write something else: they are kept
** here and counted as sent, as the kernel counts what enters its buffer.
*/
static long tls_send(csock_socket *s, const char *p, size_t n) {
  struct csock_tls *t = tls_of(s);
  if (t->dead) return -EPROTO;
  /* after shutdown("w"), as on a plain socket; SSL_write would fail the session */
  if (t->done && (SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN)) return -EPIPE;
  if (t->pend_len > 0) {
    long r = tls_flush(s);
    if (r < 0) return r;
  }
  if (n == 0) return 0;
  if (n > XPORT_CHUNK) n = XPORT_CHUNK;
  size_t w = 0;
  ERR_clear_error();
  t->err = 0;
  int r = SSL_write_ex(t->ssl, p, n, &w);
  if (r == 1) return (long)w;
  int e = SSL_get_error(t->ssl, r);
  if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) return tls_failed(s, e, 0);
  t->pend = (char *)malloc(n);
  if (t->pend == NULL) return -ENOMEM;
  memcpy(t->pend, p, n);
  t->pend_len = (uint32_t)n; /* n <= XPORT_CHUNK */
  tls_failed(s, e, 0);       /* marks the direction drained */
  return (long)n;
}

/* Frees s's TLS state after one non-blocking close_notify; s stays open. */
static void tls_close(csock_socket *s) {
  struct csock_tls *t = tls_of(s);
  if (t == NULL) return;
  ERR_clear_error();
  if (t->done && !t->dead && t->pend_len == 0) SSL_shutdown(t->ssl);
  ERR_clear_error();
  SSL_free(t->ssl);
  free(t->pre);
  free(t->pend);
  free(t->why);
  free(t);
  s->xport = NULL;
}

/* shutdown("w"): the close_notify, once; 0 or -errno. */
static int tls_shutdown(csock_socket *s) {
  struct csock_tls *t = tls_of(s);
  if (t == NULL || !t->done || t->dead) return 0;
  if (SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN) return 0;
  ERR_clear_error();
  t->err = 0;
  int r = SSL_shutdown(t->ssl);
  if (r < 0 && SSL_get_error(t->ssl, r) == SSL_ERROR_SYSCALL && t->err != 0) return -t->err;
  ERR_clear_error();
  return 0;
}

static const csock_transport tls_transport = {tls_recv, tls_send, tls_shutdown, tls_close,
                                              tls_message};

/* ---------------------------------------------------------------- starttls */

static int is_ip_literal(const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* Names the peer for SNI and the certificate check: a name, or an IP literal (no SNI). */
static int set_peer_name(SSL *ssl, const char *host) {
  if (is_ip_literal(host)) return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1;
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  return SSL_set_tlsext_host_name(ssl, host) == 1 && SSL_set1_host(ssl, host) == 1;
}

/* What starttls's opts change for one client connection (tls_connect's alpn, insecure). */
typedef struct tls_override {
  const unsigned char *alpn; /* wire format, or NULL: the context's */
  size_t alpn_len;
  int insecure;
} tls_override;

/* Attaches a new TLS state for context c to s; the bytes read ahead go to OpenSSL first. */
static int tls_attach(csock_socket *s, const tls_ctx *c, const char *host, const tls_override *o) {
  BIO_METHOD *m = csock_bio();
  struct csock_tls *t = (struct csock_tls *)calloc(1, sizeof *t);
  SSL *ssl = SSL_new(c->ctx);
  BIO *b = m != NULL ? BIO_new(m) : NULL;
  if (t == NULL || ssl == NULL || b == NULL) goto fail;
  t->ssl = ssl;
  t->fd = s->fd;
  BIO_set_data(b, t);
  SSL_set_bio(ssl, b, b);
  b = NULL;
  if (c->conf->server) {
    SSL_set_accept_state(ssl);
    t->check = c->conf->verify;
  } else {
    SSL_set_connect_state(ssl);
    t->check = c->conf->verify && !c->conf->insecure && !o->insecure;
    if (o->insecure) SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
    if (o->alpn != NULL && SSL_set_alpn_protos(ssl, o->alpn, (unsigned)o->alpn_len) != 0) goto fail;
    if (host != NULL && !set_peer_name(ssl, host)) goto fail;
  }
  size_t ahead = buf_len(s->rbuf);
  if (ahead > UINT32_MAX) goto fail;
  if (ahead > 0) {
    t->pre = (char *)malloc(ahead);
    if (t->pre == NULL) goto fail;
    memcpy(t->pre, buf_data(s->rbuf), ahead);
    t->pre_len = (uint32_t)ahead;
    buf_consume(&s->rbuf, ahead);
  }
  t->base.ops = &tls_transport;
  s->xport = &t->base;
  /* a handshake is several small writes in a row (a server's session
     tickets after its Finished): Nagle would hold the second back for the
     peer's delayed ACK, 40 ms a connection */
  sock_nodelay_now(s);
  return 0;
fail:
  BIO_free(b);
  SSL_free(ssl);
  free(t);
  ERR_clear_error();
  return -ENOMEM;
}

/* nil, "<OpenSSL's reason>[: <verify result>]", EPROTO. */
static int handshake_error(lua_State *L, csock_socket *s, int ssl_err) {
  struct csock_tls *t = tls_of(s);
  long v = SSL_get_verify_result(t->ssl);
  const char *why;
  if (ssl_err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
    why = t->err != 0 && t->err != EAGAIN ? strerror(t->err) : "connection closed by peer";
  else if (ssl_err == SSL_ERROR_ZERO_RETURN)
    why = "connection closed by peer";
  else
    why = conn_reason("handshake failed");
  if (v != X509_V_OK && t->check)
    lua_pushfstring(L, "%s: %s", why, X509_verify_cert_error_string(v));
  else
    lua_pushstring(L, why);
  tls_dead(t, lua_tostring(L, -1)); /* a read or write after it says the same */
  lua_pushnil(L);
  lua_insert(L, -2);
  lua_pushinteger(L, EPROTO);
  return 3;
}

static int starttls_fail(lua_State *L, int e) {
  if (e < 0) e = -e;
  if (e == EBADF) return csock_failmsg(L, "socket closed", EBADF);
  return csock_failure(L, e);
}

/* Stack: socket, context, host.  Drives the handshake, waiting as OpenSSL asks. */
static int starttls_k(lua_State *L, int status, lua_KContext ctx) {
  csock_socket *s = (csock_socket *)lua_touserdata(L, 1);
  double deadline = sock_op_deadline(L, s, status);
  int e = status == LUA_YIELD ? loop_woken(L) : 0;
  if (e == 0 && s->fd < 0) e = -EBADF;
  int retries = 0;
  while (e == 0) {
    struct csock_tls *t = tls_of(s);
    ERR_clear_error();
    t->err = 0;
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
      t->done = 1;
      /* from now on a peer's FIN without close_notify ends the stream */
      SSL_set_options(t->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
      lua_settop(L, 1);
      return 1;
    }
    int err = SSL_get_error(t->ssl, r);
    if (err == SSL_ERROR_WANT_READ && t->err != EAGAIN && retries++ < TLS_RETRIES) {
      continue; /* bytes handed over from before starttls, or a record that was not data */
    } else if (err == SSL_ERROR_WANT_READ) {
      loop_blocked(&s->watch, CSOCK_READ);
      e = loop_wait(L, &s->watch, CSOCK_READ, deadline, ctx, starttls_k);
    } else if (err == SSL_ERROR_WANT_WRITE) {
      loop_blocked(&s->watch, CSOCK_WRITE);
      e = loop_wait(L, &s->watch, CSOCK_WRITE, deadline, ctx, starttls_k);
    } else {
      return handshake_error(L, s, err);
    }
  }
  return starttls_fail(L, e);
}

/*
** starttls's opts (argument 4): {alpn = list, insecure = boolean} for a
** client context; the wire format stays at stack index 5 while it is used.
*/
static void check_override(lua_State *L, const tls_ctx *c, tls_override *o) {
  memset(o, 0, sizeof *o);
  lua_settop(L, 4);
  lua_pushnil(L); /* index 5: the ALPN wire string */
  if (lua_isnil(L, 4)) return;
  csock_checktype(L, 4, LUA_TTABLE);
  csock_argcheck(L, !c->conf->server, 4, "options are for client contexts");
  lua_pushnil(L);
  while (lua_next(L, 4)) {
    lua_pop(L, 1);
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (k == NULL || (strcmp(k, "alpn") != 0 && strcmp(k, "insecure") != 0))
      csock_argerror(L, 4, lua_pushfstring(L, "unknown option '%s'", k ? k : luaL_typename(L, -1)));
  }
  int t = lua_getfield(L, 4, "insecure");
  if (t != LUA_TNIL && t != LUA_TBOOLEAN)
    csock_argerror(
        L, 4,
        lua_pushfstring(L, "option 'insecure' must be a boolean, got %s", lua_typename(L, t)));
  o->insecure = lua_toboolean(L, -1);
  lua_pop(L, 1);
  t = lua_getfield(L, 4, "alpn");
  if (t == LUA_TNIL) return (void)lua_pop(L, 1);
  if (t != LUA_TTABLE) csock_argerror(L, 4, "option 'alpn' must be a list of strings");
  lua_Integer bad = push_alpn_wire(L, -1);
  if (bad != 0)
    csock_argerror(
        L, 4,
        lua_pushfstring(L, "option 'alpn': entry %d must be a name of 1 to 255 bytes", (int)bad));
  lua_replace(L, 5);
  lua_pop(L, 1);
  o->alpn = (const unsigned char *)lua_tolstring(L, 5, &o->alpn_len);
  if (o->alpn_len == 0) o->alpn = NULL;
}

/* s:starttls(ctx [, host [, opts]]) */
static int tls_starttls(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  tls_ctx *c = ctx_check(L, 2);
  if (!lua_isnoneornil(L, 3) && lua_type(L, 3) != LUA_TSTRING) csock_typeerror(L, 3, "string");
  const char *host = lua_isnoneornil(L, 3) ? NULL : lua_tostring(L, 3);
  csock_argcheck(L, s->type == SOCK_STREAM && !s->listening, 1, "TLS needs a connected stream");
  csock_argcheck(L, c->ctx != NULL, 2, "context is closed");
  csock_argcheck(L, host == NULL || strlen(host) == lua_rawlen(L, 3), 3,
                 "host contains a zero byte");
  tls_override o;
  check_override(L, c, &o);
  /* the bytes read ahead move out of the buffer, under any read's cursor */
  stream_check_not_busy(L, s);
  const struct csock_tls *t = tls_of(s);
  if (t != NULL) { /* a handshake that timed out goes on; a done one is an error */
    csock_argcheck(L, !t->done, 1, "TLS already started");
    if (t->dead) return csock_failmsg(L, "TLS failed on this socket", EPROTO);
  } else {
    csock_argcheck(
        L, c->conf->server || host != NULL || !c->conf->verify || c->conf->insecure || o.insecure,
        3, "host name expected: the context verifies the server");
    int r = tls_attach(s, c, host, &o);
    if (r < 0) return csock_failure(L, r);
  }
  return starttls_k(L, LUA_OK, 0);
}

/* ---------------------------------------------------------------- tlsinfo */

static void push_name(lua_State *L, const X509_NAME *name) {
  BIO *b = BIO_new(BIO_s_mem());
  char *p = NULL;
  long len;
  if (b == NULL || X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) < 0 ||
      (len = BIO_get_mem_data(b, &p)) < 0) {
    lua_pushnil(L);
  } else {
    lua_pushlstring(L, p, (size_t)len);
  }
  BIO_free(b);
}

static void push_peer(lua_State *L, SSL *ssl) {
  X509 *peer = SSL_get1_peer_certificate(ssl);
  if (peer == NULL) return;
  lua_createtable(L, 0, 2);
  push_name(L, X509_get_subject_name(peer));
  lua_setfield(L, -2, "subject");
  push_name(L, X509_get_issuer_name(peer));
  lua_setfield(L, -2, "issuer");
  X509_free(peer);
  lua_setfield(L, -2, "peer");
}

/* s:tlsinfo(): the session's facts, or nil on a plain socket. */
static int tls_info(lua_State *L) {
  csock_socket *s = sock_checkopen(L, 1);
  struct csock_tls *t = tls_of(s);
  if (t == NULL || !t->done) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 6);
  lua_pushstring(L, SSL_get_version(t->ssl));
  lua_setfield(L, -2, "version");
  lua_pushstring(L, SSL_get_cipher_name(t->ssl));
  lua_setfield(L, -2, "cipher");
  const unsigned char *alpn = NULL;
  unsigned alen = 0;
  SSL_get0_alpn_selected(t->ssl, &alpn, &alen);
  if (alen > 0) {
    lua_pushlstring(L, (const char *)alpn, alen);
    lua_setfield(L, -2, "alpn");
  }
  const char *sni = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
  if (sni != NULL) {
    lua_pushstring(L, sni);
    lua_setfield(L, -2, "servername");
  }
  X509 *peer = SSL_get0_peer_certificate(t->ssl);
  lua_pushboolean(L, t->check && peer != NULL && SSL_get_verify_result(t->ssl) == X509_V_OK);
  lua_setfield(L, -2, "verified");
  push_peer(L, t->ssl);
  return 1;
}

const luaL_Reg tls_methods[] = {
    {"starttls", tls_starttls},
    {"tlsinfo", tls_info},
    {NULL, NULL},
};

/* The context metatable and csock._TLS, in the module table at the top. */
void tls_open(lua_State *L) {
  static const luaL_Reg metameth[] = {
      {"__gc", ctx_gc}, {"__close", ctx_gc}, {"__tostring", ctx_tostring}, {NULL, NULL}};
  lua_newuserdatauv(L, 0, 0); /* its __gc runs when the state closes */
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, bio_release);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "csock.tls_bio");
  bio_users++;
  luaL_newmetatable(L, CSOCK_TLS_CONTEXT);
  luaL_setfuncs(L, metameth, 0);
  lua_pushliteral(L, "__index");
  lua_newtable(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  lua_pushstring(L, OpenSSL_version(OPENSSL_VERSION));
  lua_setfield(L, -2, "_TLS");
}
