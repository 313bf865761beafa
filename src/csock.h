/*
** csock.h - shared structures and internal prototypes of csock.core.
** Nothing here is part of the Lua API; see SPEC.md / docs/ for that.
*/
#ifndef CSOCK_H
#define CSOCK_H

#include <stddef.h>
#include <sys/socket.h>

#include "lua.h"
#include "lauxlib.h"

#pragma GCC visibility push(hidden)

#define CSOCK_VERSION "csock 0.1.0"
#define CSOCK_SOCKET "csock.socket" /* metatable name of sockets */
#define CSOCK_COND "csock.cond"     /* metatable name of conditions */
#define CSOCK_TASK "csock.task"     /* metatable name of task handles */
#define CSOCK_LOOP "csock.loop"     /* metatable name of embedded loops */

#define CSOCK_MAXLINE_DEFAULT (64 * 1024)

/* Directions a task can wait for on a descriptor. */
enum { CSOCK_READ = 1, CSOCK_WRITE = 2, CSOCK_HUP = 4 };

struct csock_task;
struct csock_loop;

/* The read buffer of a socket: buf.c's alone (a header at the front of its data). */
typedef struct csock_buf csock_buf;

/*
** A watcher: the poller's record of one descriptor (libuv's uv__io_t).  It
** is embedded in what owns the descriptor (a socket, a name lookup's
** eventfd), and only loop.c reads or writes its fields, through the
** loop_* functions below; the backend under loop.c sees descriptors and
** pointers only.  fd is the exception: the owner opens and closes the
** descriptor and names it itself (a union puts fd first), the loop reads it.
*/
typedef struct csock_watch {
  int fd;                    /* the descriptor; -1 once closed */
  unsigned registered : 1;   /* fd is in the poller of loop generation gen */
  unsigned rready : 1;       /* no short read or EAGAIN since the last read edge */
  unsigned wready : 1;       /* no short write or EAGAIN since the last write edge */
  unsigned rdhup : 1;        /* the poller saw the peer's FIN: a short read is not the end */
  unsigned wwatch : 1;       /* the registration includes write interest */
  unsigned gen;              /* loop generation the registration belongs to */
  struct csock_task *reader; /* task waiting to read, if any */
  struct csock_task *writer; /* task waiting to write, if any */
} csock_watch;

typedef struct csock_socket {
  const void *token; /* marks csock's sockets among userdata: see sock_check */
  union {
    int fd;            /* -1 once closed: the watcher's, under the socket's name */
    csock_watch watch; /* loop.c's alone */
  };
  /* the small fields share one word: every idle connection holds a socket */
  unsigned char family, type; /* as given to socket(2): AF_* and SOCK_* are small */
  unsigned char eof : 1;      /* the peer shut its side down (recv returned 0) */
  unsigned char listening : 1;
  unsigned char nodelay_due : 2; /* TCP_NODELAY still to be set: see sock_before_send */
  unsigned char rbusy : 1;       /* a read() holds a cursor into rbuf: see loop_read_begin */
  unsigned char inherited : 1;   /* the descriptor came from elsewhere (systemd): maybe shared */
  unsigned char corked : 1;      /* a send's bytes wait in the kernel for close (cork.c) */
  unsigned char wrote : 1;       /* sent since its last read: cork.c's guess */
  unsigned born;                 /* workers_forks() when the socket was made */
  double timeout;                /* seconds per operation; < 0 waits forever */
  size_t maxline;                /* longest line read("l") accepts */
  csock_buf *rbuf;               /* NULL while empty; its cursor is the read under way's */
  struct csock_xport *xport;     /* NULL: plain recv/send; else the transport's state (tls.c) */
} csock_socket;

/* Every idle connection holds a socket: with Lua's 32-byte header it takes a 112-byte block. */
_Static_assert(sizeof(csock_socket) <= 80, "csock_socket outgrew its block");

/*
** A transport under a stream socket's reads and writes, in place of
** recv(2)/send(2): TLS (tls.c).  Both return bytes moved (> 0; recv: 0 at
** end of stream) or -errno, and on would-block -XPORT_WANT_READ or
** -XPORT_WANT_WRITE, having marked that direction blocked (loop_blocked).
** A TLS read may need to write and a write to read, hence two codes.
*/
#define XPORT_WANT_READ 0x10001
#define XPORT_WANT_WRITE 0x10002
#define XPORT_CHUNK (16 * 1024) /* the most one send takes: a TLS record's plaintext */
/* The state of a socket's transport begins with this: its functions (csock_transport). */
typedef struct csock_xport {
  const struct csock_transport *ops;
} csock_xport;
typedef struct csock_transport {
  long (*recv)(csock_socket *s, char *p, size_t n);
  long (*send)(csock_socket *s, const char *p, size_t n);
  int (*shutdown)(csock_socket *s); /* before shutdown(SHUT_WR): 0 or -errno */
  void (*close)(csock_socket *s);   /* before close(2): frees the state, unsets xport */
  /* the message for error err the transport reported last, or NULL for strerror's */
  const char *(*message)(const csock_socket *s, int err);
} csock_transport;

/* check.c: the clock and the failure results */
double csock_now(void);
int csock_failure(lua_State *L, int err);
int csock_failmsg(lua_State *L, const char *msg, int err);

/* check.c: argument checks that count self as #1 */
int csock_argerror(lua_State *L, int arg, const char *extramsg);
int csock_typeerror(lua_State *L, int arg, const char *tname);
void csock_checktype(lua_State *L, int arg, int t);
void csock_checkany(lua_State *L, int arg);
lua_Integer csock_checkinteger(lua_State *L, int arg);
lua_Integer csock_optinteger(lua_State *L, int arg, lua_Integer def);
lua_Number csock_checknumber(lua_State *L, int arg);
void csock_checkduration(lua_State *L, int arg, lua_Number t, const char *what);
const char *csock_checklstring(lua_State *L, int arg, size_t *len);
int csock_checkoption(lua_State *L, int arg, const char *const lst[]);
void *csock_checkudata(lua_State *L, int arg, const char *tname);
#define csock_checkstring(L, arg) csock_checklstring(L, (arg), NULL)
#define csock_argcheck(L, cond, arg, msg) ((void)((cond) || csock_argerror(L, (arg), (msg))))

/* socket.c */
csock_socket *sock_check(lua_State *L, int idx);
csock_socket *sock_checkopen(lua_State *L, int idx);
csock_socket *sock_push(lua_State *L, int family, int type);
csock_socket *sock_push_from_method(lua_State *L, int family, int type);
/* The upvalues of every socket method: the metatable, the address tables' field names, and the
   last IPv4 address the method turned into text, with that text (addr.c, push_ipv4). */
enum {
  SOCK_UV_META = 1,
  SOCK_UV_FAMILY,
  SOCK_UV_ADDR,
  SOCK_UV_PORT,
  SOCK_UV_PATH,
  SOCK_UV_IPV4,
  SOCK_UV_IPV4_TEXT,
  SOCK_NUPVALUES = 7
};
int sock_close(lua_State *L, csock_socket *s);
void sock_open_meta(lua_State *L);
void sock_add_methods(lua_State *L, const luaL_Reg *methods);
double sock_deadline(const csock_socket *s);
double sock_op_deadline(lua_State *L, const csock_socket *s, int status);
void sock_nodelay_later(csock_socket *s);
void sock_nodelay_now(csock_socket *s);
void sock_nodelay_step(csock_socket *s);
/* Call before every send on a stream: sets TCP_NODELAY when it is due. */
#define sock_before_send(s) ((void)((s)->nodelay_due && (sock_nodelay_step(s), 0)))
int sock_first_send_flags(lua_State *L, csock_socket *s);
/* The flags of a send of write's: MSG_NOSIGNAL, and MSG_MORE when the bytes are to wait for a
   close (cork.c); does what sock_before_send does. */
#define sock_send_flags(L, s) ((s)->nodelay_due ? sock_first_send_flags(L, s) : MSG_NOSIGNAL)
int sock_new(lua_State *L);
int sock_pair(lua_State *L);

/* io.c: the I/O methods, added to the socket class by csock.c */
extern const luaL_Reg io_methods[];
int io_send(lua_State *L);
int io_recv(lua_State *L);
int io_sendto(lua_State *L);
int io_recvfrom(lua_State *L);
int io_write(lua_State *L);
int io_accept(lua_State *L);
int io_connect(lua_State *L);

/* stream.c: the waits every method shares, and stream_fill, which reads more
   bytes into s's buffer (> 0 read, 0 end of stream, -errno) */
int stream_fill(csock_socket *s, size_t want);
int stream_resumed(lua_State *L, int status, csock_socket *s);
int stream_error(lua_State *L, const csock_socket *s, int err);
void stream_check_not_busy(lua_State *L, const csock_socket *s);
int stream_fill_or_wait(lua_State *L, csock_socket *s, size_t want, double deadline,
                        lua_KContext ctx, lua_KFunction k);
int stream_again_or_fail(lua_State *L, csock_socket *s, int dir, int e, double deadline,
                         lua_KContext ctx, lua_KFunction k);
int stream_xport_wait(lua_State *L, csock_socket *s, long r, double deadline, lua_KContext ctx,
                      lua_KFunction k);

/* sendfile.c: s:sendfile, added to the socket class by csock.c */
extern const luaL_Reg sendfile_methods[];

/* read.c: read and lines, added to the socket class by csock.c */
extern const luaL_Reg read_methods[];

/* compat.c: LuaSocket's receive and send for csock.socket (_lsrecv, _lssend) */
extern const luaL_Reg compat_methods[];

/* http.c: the HTTP/1.1 parser's socket methods (_httpreq, _httpres, _httpchunk) */
extern const luaL_Reg http_methods[];
void http_open(lua_State *L); /* csock.core.http */

/* tls.c */
void tls_open(lua_State *L);
int tls_context(lua_State *L);
extern const luaL_Reg tls_methods[]; /* starttls, tlsinfo: added to the socket class by csock.c */

/* addr.c */
int addr_parse_family(lua_State *L, int idx);
int addr_from_args(lua_State *L, int idx, int family, int socktype, struct sockaddr_storage *ss,
                   socklen_t *len);
void addr_push(lua_State *L, const struct sockaddr *sa, socklen_t len);
void addr_push_from_method(lua_State *L, const struct sockaddr *sa, socklen_t len);
const char *addr_checkstring(lua_State *L, int idx, const char *what);
int addr_pusherror(lua_State *L, int gai);
struct addrinfo;
void addr_push_list(lua_State *L, const struct addrinfo *res);
void addr_name_hints(struct addrinfo *hints, int family, int socktype);
void addr_push_resolved(lua_State *L, const struct sockaddr *sa, socklen_t len);

/* opt.c */
extern const luaL_Reg opt_methods[];
int opt_set(lua_State *L);
int opt_get(lua_State *L);
void opt_push_constants(lua_State *L);

/* cork.c: a reply and the FIN after it in one segment */
int cork_expected(void);
void cork_add(csock_socket *s);
void cork_forget(csock_socket *s);
void cork_set_nodelay(csock_socket *s);
void cork_closing(csock_socket *s, int shared);
void cork_reading(csock_socket *s);
void cork_flush(void);
/* Call where a read of s starts: a read after a write tells cork.c the connection goes on. */
#define sock_note_read(s) ((void)((s)->wrote && (cork_reading(s), 0)))

/* buf.c: a socket's read buffer; NULL is the empty buffer */
size_t buf_len(const csock_buf *b);
const char *buf_data(const csock_buf *b);
size_t buf_scanned(const csock_buf *b);
void buf_set_scanned(csock_buf *b, size_t n);
const char *buf_unread(const csock_buf *b, size_t *len);
void buf_take(csock_buf *b, size_t n);
void buf_consume_taken(csock_buf **bp);
void buf_rewind(csock_buf *b);
void buf_consume(csock_buf **bp, size_t n);
char *buf_reserve(csock_buf **bp, size_t want, size_t *avail);
void buf_commit(csock_buf *b, size_t n);
void buf_free(csock_buf **bp);
char *buf_scratch(size_t *size);
char *buf_string_space(size_t want, size_t *room);
void buf_push_string(lua_State *L, const char *p, size_t len);

/* loop.c */
typedef struct csock_waitlist { /* tasks waiting on a condition (cond.c), oldest first */
  struct csock_task *head, *tail;
} csock_waitlist;
int loop_wait_on(lua_State *L, csock_waitlist *wl, double deadline, lua_KContext ctx,
                 lua_KFunction k);
int loop_wake_first(csock_waitlist *wl);
int loop_wake_all(csock_waitlist *wl);
const struct csock_task *loop_next_waiter(const struct csock_task *t);
int loop_woken(lua_State *L);
int loop_pause(lua_State *L, double secs, lua_KContext ctx, lua_KFunction k);
int loop_in_task(lua_State *L);
void loop_read_begin(lua_State *L, csock_socket *s);
void loop_read_end(lua_State *L, csock_socket *s);
void loop_read_abandon(lua_State *L, csock_socket *s);
/* loop.c: a watcher's life (see csock_watch) */
void loop_watch_init(csock_watch *w);
int loop_ready(const csock_watch *w, int dir);
void loop_blocked(csock_watch *w, int dir);
void loop_drained(csock_watch *w);
int loop_waiting(const csock_watch *w, int dir);
int loop_wait(lua_State *L, csock_watch *w, int dir, double deadline, lua_KContext ctx,
              lua_KFunction k);
double loop_op_deadline(lua_State *L);
int loop_wait_shared(lua_State *L, csock_watch *w, int dir, double deadline, lua_KContext ctx,
                     lua_KFunction k);
void loop_wait_also(lua_State *L, csock_watch *w);
void loop_forget(csock_watch *w, int shared);
void loop_after_fork(void);
int loop_run(lua_State *L);
int loop_spawn(lua_State *L);
int loop_sleep(lua_State *L);
const char *loop_last_traceback(lua_State *L);

/* cond.c */
int cond_new(lua_State *L);
void cond_open_meta(lua_State *L);

/* loop.c: coroutines a task resumes itself (see coro.c) */
typedef struct csock_nest {
  struct csock_loop *loop;
  lua_State *thread;
  int passable;
} csock_nest;
int loop_nest_enter(lua_State *L, lua_State *co, csock_nest *saved);
void loop_nest_leave(const csock_nest *saved);
int loop_nest_park(lua_State *L);
void loop_nest_unpark(lua_State *L);
int loop_nest_parked(lua_State *L);
void loop_note_running(lua_State *L);

/* resolve.c: names looked up on a helper thread while the task waits */
#define ADDR_LOOKUP 0x40000000 /* addr_from_args: a name for resolve_then (above any errno) */
int resolve_then(lua_State *L, int idx, int family, int socktype, double deadline,
                 lua_CFunction again);
int resolve_getaddrinfo(lua_State *L);

/* coro.c */
void coro_install(lua_State *L);

/* signal.c */
int signal_lua(lua_State *L);
int signal_fd(void);
void signal_mark_passive(lua_State *L, int signo);
int signal_active(void);
int signal_collect(lua_State *L);
void signal_after_fork(void);

/* ready.c: readiness without I/O (LuaSocket's select and dirty) */
int ready_wait(lua_State *L);
int ready_pending(lua_State *L);

/* systemd.c */
int systemd_listeners(lua_State *L);

/* task.c: task handles, csock.current, csock.tasks and the dump */
void task_open_meta(lua_State *L);
int task_current(lua_State *L);
int task_list(lua_State *L);
int task_dump(lua_State *L);

/* embed.c: csock.loop() */
int embed_new(lua_State *L);
void embed_open_meta(lua_State *L);

/* alloc.c: the host's state, allocator and collector pacing (bin/csock only) */
lua_State *alloc_newstate(void);
void alloc_close(lua_State *L);

/*
** buf.c: set by a host whose allocator can take a filled block as a new
** string's memory (alloc.c "Adoption"); NULL in a plain lua5.4.
*/
extern char *(*csock_string_space)(size_t n);
extern void (*csock_string_push)(lua_State *L, const char *p, size_t len);

/* loop.c: called once per loop turn when set (the host sets it; see alloc.c) */
extern void (*loop_turn_hook)(lua_State *L);

/* workers.c */
int workers_current_id(void);
unsigned workers_forks(void);
int workers_supervise(int n);
int workers_lua(lua_State *L);
int workers_id_lua(lua_State *L);

/* ws.c: WebSocket byte work, the table csock.core.ws */
void ws_open(lua_State *L);

#pragma GCC visibility pop

int luaopen_csock_core(lua_State *L);

#endif
