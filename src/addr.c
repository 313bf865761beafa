/*
** addr.c - addresses: Lua arguments to sockaddr, sockaddr to Lua tables,
** and getaddrinfo.  Numeric hosts are converted with inet_pton and never
** reach the resolver.  Names go through getaddrinfo(3): inside a task on a
** helper thread while the task waits (resolve.c), elsewhere in place,
** blocking the calling thread.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "csock.h"

/* Family argument: an integer AF_* value or one of "inet", "inet6", "unix". */
int addr_parse_family(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    static const char *const names[] = {"inet", "inet6", "unix", NULL};
    static const int values[] = {AF_INET, AF_INET6, AF_UNIX};
    return values[csock_checkoption(L, idx, names)];
  }
  lua_Integer f = csock_checkinteger(L, idx);
  if (f != AF_INET && f != AF_INET6 && f != AF_UNIX)
    csock_argerror(L, idx, "unsupported address family");
  return (int)f;
}

const char *addr_checkstring(lua_State *L, int idx, const char *what) {
  size_t len;
  const char *s = csock_checklstring(L, idx, &len);
  if (strlen(s) != len) csock_argerror(L, idx, lua_pushfstring(L, "%s contains a zero byte", what));
  return s;
}

static unsigned short addr_checkport(lua_State *L, int idx) {
  lua_Integer port = csock_checkinteger(L, idx);
  csock_argcheck(L, port >= 0 && port <= 65535, idx, "port out of range");
  return (unsigned short)port;
}

static int addr_unix(lua_State *L, int idx, struct sockaddr_storage *ss, socklen_t *len) {
  size_t n;
  if (lua_type(L, idx) != LUA_TSTRING) csock_typeerror(L, idx, "string"); /* not a port */
  const char *path = lua_tolstring(L, idx, &n);
  struct sockaddr_un *un = (struct sockaddr_un *)ss;
  /* a leading zero byte names Linux's abstract namespace; anywhere else it
     would silently truncate the path */
  if (n == 0 || memchr(path + 1, '\0', n - 1) != NULL)
    csock_argerror(L, idx, n == 0 ? "empty path" : "path contains a zero byte");
  csock_argcheck(L, n < sizeof un->sun_path, idx, "path too long");
  memset(un, 0, sizeof *un);
  un->sun_family = AF_UNIX;
  memcpy(un->sun_path, path, n);
  *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] != '\0'));
  return 0;
}

/* The hints a method's host name is resolved with (here or by resolve.c). */
void addr_name_hints(struct addrinfo *hints, int family, int socktype) {
  memset(hints, 0, sizeof *hints);
  hints->ai_family = family;
  hints->ai_socktype = socktype;
  hints->ai_flags = family == AF_INET6 ? AI_V4MAPPED : 0;
}

/*
** What resolve.c found for the host name of a method it calls again: a
** userdata that takes the name's place among the method's arguments, so
** the address goes to that call and to no other (a slot matched by the
** name's string address could be met by a later, different name that
** lands at the same address).  It carries the address of a static of
** this file at its start, as a socket does (socket.c), so a script cannot
** forge one.
*/
static char resolved_token;

typedef struct addr_resolved {
  const void *token;
  socklen_t len;
  struct sockaddr_storage ss;
} addr_resolved;

void addr_push_resolved(lua_State *L, const struct sockaddr *sa, socklen_t len) {
  addr_resolved *r = (addr_resolved *)lua_newuserdatauv(L, sizeof *r, 0);
  r->token = &resolved_token;
  r->len = len <= sizeof r->ss ? len : (socklen_t)sizeof r->ss;
  memcpy(&r->ss, sa, r->len);
}

/* The address at idx if resolve.c put one there for family, else NULL. */
static const addr_resolved *resolved_at(lua_State *L, int idx, int family) {
  const addr_resolved *r = (const addr_resolved *)lua_touserdata(L, idx);
  if (r == NULL || lua_rawlen(L, idx) != sizeof *r || r->token != &resolved_token) return NULL;
  return r->ss.ss_family == family ? r : NULL;
}

static void set_port(struct sockaddr_storage *ss, int family, unsigned short port) {
  if (family == AF_INET6)
    ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
  else
    ((struct sockaddr_in *)ss)->sin_port = htons(port);
}

/*
** A name for the resolver: ADDR_LOOKUP inside a task (the caller hands it
** to resolve_then, which calls the method again with the address found),
** else resolved in place.
*/
static int addr_resolve(lua_State *L, const char *host, unsigned short port, int family,
                        int socktype, struct sockaddr_storage *ss, socklen_t *len) {
#ifdef CSOCK_NO_RESOLVER /* fuzzing builds never touch the network */
  (void)L, (void)host, (void)port, (void)family, (void)socktype, (void)ss, (void)len;
  return EAI_NONAME;
#endif
  if (loop_in_task(L)) return ADDR_LOOKUP;
  struct addrinfo hints, *res = NULL;
  addr_name_hints(&hints, family, socktype);
  int r = getaddrinfo(host, NULL, &hints, &res);
  if (r != 0) return r == EAI_SYSTEM ? errno : r;
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  set_port(ss, family, port);
  return 0;
}

/*
** Reads an address from the arguments at idx (host, port for the inet
** families; path for AF_UNIX) into ss.  Bad arguments raise; a name that
** does not resolve returns a getaddrinfo code (EAI_* < 0, or an errno > 0).
*/
int addr_from_args(lua_State *L, int idx, int family, int socktype, struct sockaddr_storage *ss,
                   socklen_t *len) {
  if (family == AF_UNIX) return addr_unix(L, idx, ss, len);
  const addr_resolved *found = resolved_at(L, idx, family);
  if (found != NULL) {
    unsigned short port = addr_checkport(L, idx + 1);
    memcpy(ss, &found->ss, found->len);
    *len = found->len;
    set_port(ss, family, port);
    return 0;
  }
  const char *host = addr_checkstring(L, idx, "host");
  unsigned short port = addr_checkport(L, idx + 1);
  memset(ss, 0, sizeof *ss);
  if (family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    *len = sizeof *in;
    if (strcmp(host, "*") == 0 || host[0] == '\0') {
      in->sin_addr.s_addr = htonl(INADDR_ANY);
      return 0;
    }
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) return 0;
  } else {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    *len = sizeof *in6;
    if (strcmp(host, "*") == 0 || host[0] == '\0') {
      in6->sin6_addr = in6addr_any;
      return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) return 0;
  }
  return addr_resolve(L, host, port, family, socktype, ss, len);
}

/* glibc's EAI_* codes are negative, which keeps them apart from errno values. */
_Static_assert(EAI_NONAME < 0 && EAI_SYSTEM < 0, "csock expects glibc's negative EAI_* codes");

/* Pushes nil, message, code for a resolver failure: an EAI_* code (< 0) or an errno. */
int addr_pusherror(lua_State *L, int gai) {
  if (gai > 0) return csock_failure(L, gai);
  lua_pushnil(L);
  lua_pushstring(L, gai_strerror(gai));
  lua_pushinteger(L, gai);
  return 3;
}

/*
** Dotted-quad text of an IPv4 address, as inet_ntop writes it; done here
** because glibc's inet_ntop goes through sprintf, a tenth of the user
** time of a connection that makes one request.
*/
static size_t ipv4_text(const struct in_addr *a, char *out) {
  const unsigned char *b = (const unsigned char *)&a->s_addr;
  char *p = out;
  for (int i = 0; i < 4; i++) {
    unsigned v = b[i];
    if (i > 0) *p++ = '.';
    if (v >= 100) *p++ = (char)('0' + v / 100);
    if (v >= 10) *p++ = (char)('0' + v / 10 % 10);
    *p++ = (char)('0' + v % 10);
  }
  return (size_t)(p - out);
}

/*
** Pushes the field name for the address table being built: from the
** method's upvalues (SOCK_UV_*) when it has them, else by name.  accept
** builds a table per connection, and lua_setfield looked each name up in
** the string cache (a hash, a strcmp) before storing: a quarter of the
** table's cost.
*/
static void push_key(lua_State *L, int from_method, int uv, const char *name) {
  if (from_method)
    lua_pushvalue(L, lua_upvalueindex(uv));
  else
    lua_pushstring(L, name);
}

/*
** Pushes the text of an IPv4 address.  A method remembers the last one it
** made (SOCK_UV_IPV4*): the peers of a server's connections are mostly the
** same few (a proxy, a load balancer, loopback), and making the text and
** interning a new string is a visible part of an accept's cost.
*/
static void push_ipv4(lua_State *L, const struct in_addr *a, int from_method) {
  char text[INET_ADDRSTRLEN];
  lua_Integer ip = (lua_Integer)ntohl(a->s_addr);
  if (from_method && lua_tointeger(L, lua_upvalueindex(SOCK_UV_IPV4)) == ip) {
    lua_pushvalue(L, lua_upvalueindex(SOCK_UV_IPV4_TEXT));
    return;
  }
  lua_pushlstring(L, text, ipv4_text(a, text));
  if (!from_method) return;
  lua_pushvalue(L, -1);
  lua_replace(L, lua_upvalueindex(SOCK_UV_IPV4_TEXT));
  lua_pushinteger(L, ip);
  lua_replace(L, lua_upvalueindex(SOCK_UV_IPV4));
}

static void push_address(lua_State *L, const struct sockaddr *sa, socklen_t len, int m) {
  lua_createtable(L, 0, 3);
  push_key(L, m, SOCK_UV_FAMILY, "family");
  lua_pushinteger(L, sa->sa_family);
  lua_rawset(L, -3);
  switch (sa->sa_family) {
    case AF_INET: {
      const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
      push_key(L, m, SOCK_UV_ADDR, "addr");
      push_ipv4(L, &in->sin_addr, m);
      lua_rawset(L, -3);
      push_key(L, m, SOCK_UV_PORT, "port");
      lua_pushinteger(L, ntohs(in->sin_port));
      lua_rawset(L, -3);
      break;
    }
    case AF_INET6: {
      const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
      char text[INET6_ADDRSTRLEN];
      inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
      push_key(L, m, SOCK_UV_ADDR, "addr");
      lua_pushstring(L, text);
      lua_rawset(L, -3);
      push_key(L, m, SOCK_UV_PORT, "port");
      lua_pushinteger(L, ntohs(in6->sin6_port));
      lua_rawset(L, -3);
      break;
    }
    case AF_UNIX: {
      const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
      size_t off = offsetof(struct sockaddr_un, sun_path);
      size_t n = len > off ? (size_t)len - off : 0;
      if (n > sizeof un->sun_path) n = sizeof un->sun_path;
      if (n > 0 && un->sun_path[0] != '\0') { /* pathname: may lack its NUL */
        const char *end = memchr(un->sun_path, '\0', n);
        if (end) n = (size_t)(end - un->sun_path);
      }
      push_key(L, m, SOCK_UV_PATH, "path");
      lua_pushlstring(L, un->sun_path, n);
      lua_rawset(L, -3);
      break;
    }
    default: break;
  }
}

/* Pushes {family=, addr=, port=} or {family=, path=} for sa. */
void addr_push(lua_State *L, const struct sockaddr *sa, socklen_t len) {
  push_address(L, sa, len, 0);
}

/* addr_push for the socket methods, which hold the field names as upvalues (SOCK_UV_*). */
void addr_push_from_method(lua_State *L, const struct sockaddr *sa, socklen_t len) {
  push_address(L, sa, len, 1);
}

/* Pushes getaddrinfo's results as an array of address tables. */
void addr_push_list(lua_State *L, const struct addrinfo *res) {
  lua_newtable(L);
  int i = 0;
  for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    addr_push(L, ai->ai_addr, ai->ai_addrlen);
    lua_pushinteger(L, ai->ai_socktype);
    lua_setfield(L, -2, "socktype");
    lua_pushinteger(L, ai->ai_protocol);
    lua_setfield(L, -2, "protocol");
    if (ai->ai_canonname) {
      lua_pushstring(L, ai->ai_canonname);
      lua_setfield(L, -2, "canonname");
    }
    lua_rawseti(L, -2, ++i);
  }
}
