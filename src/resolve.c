/*
** resolve.c - host names looked up on helper threads while the task waits.
**
** getaddrinfo(3) has no non-blocking form.  Inside a task, a host *name*
** (numeric addresses never reach the resolver) is looked up by a helper
** thread, and the task waits on an eventfd that the thread writes when it
** is done, so the loop runs the other tasks meanwhile, as libuv's
** getaddrinfo does with its thread pool.  Outside a task, or where Lua
** cannot yield, addr.c resolves in place, blocking.
**
** At most RESOLVER_THREADS helpers run at once; lookups beyond that wait
** in a queue, and a helper that finishes takes the next one before it
** ends, so a thousand tasks connecting to names at once make a handful of
** threads, not a thousand, and no thread lingers once the queue is empty.
**
** Who frees a lookup: a helper touches it only until it sets `finished`,
** its very last step.  The loop's thread frees it once `finished` is set:
** at once when the waiting call goes on, or -- when the call gave up (a
** timeout, a cancelled task) -- later, from this thread's list of orphans,
** swept whenever a lookup starts.  Its eventfd is closed only then, so the
** poller never reports an event for freed memory.  A lookup given up
** while still queued is marked abandoned and skipped, not looked up.
*/
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "csock.h"

#define CSOCK_LOOKUP "csock.lookup"

/* Enough for lookups that wait on slow DNS servers not to hold up the rest. */
#define RESOLVER_THREADS 16

typedef struct lookup {
  union {
    int efd;           /* the eventfd the helper thread writes when it is done */
    csock_watch watch; /* loop.c's, for the task that waits on efd */
  };
  char *host, *service;
  struct addrinfo hints;
  int rc;  /* what getaddrinfo returned */
  int err; /* errno after it, for EAI_SYSTEM */
  struct addrinfo *res;
  atomic_int finished;
  atomic_int abandoned; /* nobody waits for it any more: skip the lookup */
  pid_t pid;            /* the process whose thread does the lookup (a forked child has none) */
  lua_CFunction again;  /* resolve_then: the method to call again, and */
  int idx;              /* the index of its host argument */
  struct lookup *next_orphan;
  struct lookup *next_queued;
} lookup;

/* The Lua side of a lookup under way: a userdata on the waiting call's stack. */
typedef struct lookup_box {
  lookup *lk;
} lookup_box;

static _Thread_local lookup *orphans;

/*
** The queue of lookups waiting for a helper, shared by every thread of the
** process.  `helpers` counts the helpers alive; each one ends when it
** finds the queue empty.
*/
static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static lookup *queue_head, *queue_tail;
static int helpers;

static void lookup_run(lookup *lk) {
  if (atomic_load_explicit(&lk->abandoned, memory_order_acquire)) {
    lk->rc = EAI_AGAIN;
  } else {
    lk->rc = getaddrinfo(lk->host, lk->service, &lk->hints, &lk->res);
    lk->err = errno;
  }
  uint64_t one = 1;
  ssize_t w = write(lk->efd, &one, sizeof one);
  (void)w; /* an eventfd write of 1 cannot fail short of overflow */
  atomic_store_explicit(&lk->finished, 1, memory_order_release); /* lk is not ours any more */
}

/* Takes the next queued lookup, or ends this helper's count if there is none. */
static lookup *queue_next(void) {
  pthread_mutex_lock(&queue_lock);
  lookup *lk = queue_head;
  if (lk != NULL) {
    queue_head = lk->next_queued;
    if (queue_head == NULL) queue_tail = NULL;
  } else {
    helpers--;
  }
  pthread_mutex_unlock(&queue_lock);
  return lk;
}

static void *helper_main(void *arg) {
  for (lookup *lk = (lookup *)arg; lk != NULL; lk = queue_next()) lookup_run(lk);
  return NULL;
}

/*
** A fork while a helper holds the lock would leave the child's copy locked
** for good: the lock is held across fork, and the child, whose helpers did
** not come along, starts with none and an empty queue (the queued lookups
** are the parent's to finish; a child's task waiting on one is woken by the
** shared eventfd and sees it lost, see lookup_result).
*/
static void fork_prepare(void) { pthread_mutex_lock(&queue_lock); }
static void fork_parent(void) { pthread_mutex_unlock(&queue_lock); }
static void fork_child(void) {
  queue_head = queue_tail = NULL;
  helpers = 0;
  pthread_mutex_unlock(&queue_lock);
}

/*
** A helper may still be in getaddrinfo when lua_close unloads this library
** (os.exit while a task connects to a name): its code must stay mapped, so
** the library pins itself before the first helper starts.
*/
static void pin_library(void) {
  Dl_info info;
  if (dladdr((void *)helper_main, &info) != 0 && info.dli_fname != NULL)
    dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

static pthread_once_t fork_handlers_once = PTHREAD_ONCE_INIT;
static void install_fork_handlers(void) {
  pthread_atfork(fork_prepare, fork_parent, fork_child);
  pin_library();
}

/*
** Whether no helper will touch lk any more: it finished, or it is a copy
** that a fork made of a lookup under way in the parent, whose helper
** finishes the parent's copy only (the child has no helpers of its own
** for it), so it would wait, and stay on the orphan list, for good.
*/
static int lookup_finished(lookup *lk) {
  return atomic_load_explicit(&lk->finished, memory_order_acquire);
}

static int lookup_done(lookup *lk) { return lookup_finished(lk) || lk->pid != getpid(); }

static void lookup_free(lookup *lk) {
  loop_forget(&lk->watch, 1); /* no waiter or poller may keep pointing here */
  if (lk->efd >= 0) close(lk->efd);
  if (lk->res) freeaddrinfo(lk->res);
  free(lk->host);
  free(lk->service);
  free(lk);
}

static void sweep_orphans(void) {
  lookup **p = &orphans;
  while (*p) {
    lookup *lk = *p;
    if (lookup_done(lk)) {
      *p = lk->next_orphan;
      lookup_free(lk);
    } else {
      p = &lk->next_orphan;
    }
  }
}

/*
** The Lua side lets go: free now if the thread is done, else later.  A
** task may still wait on the eventfd (the box is collected at lua_close,
** newest first, before the loop that runs the task): it is woken, with
** -EBADF, and the eventfd leaves the pollers, before the lookup can go.
*/
static void box_release(lookup_box *box) {
  lookup *lk = box->lk;
  if (lk == NULL) return;
  box->lk = NULL;
  loop_forget(&lk->watch, 1);
  if (lookup_done(lk)) {
    lookup_free(lk);
  } else {
    atomic_store_explicit(&lk->abandoned, 1, memory_order_release);
    lk->next_orphan = orphans;
    orphans = lk;
  }
}

/* __close and __gc of the lookup's userdata (whichever comes first lets go). */
static int box_gc(lua_State *L) {
  box_release((lookup_box *)luaL_checkudata(L, 1, CSOCK_LOOKUP));
  return 0;
}

static char *dup_or_null(const char *s, int *failed) {
  if (s == NULL) return NULL;
  char *d = strdup(s);
  if (d == NULL) *failed = 1;
  return d;
}

/*
** A detached helper that starts with lk, with every signal blocked in it
** (as libuv's pool threads have): signals stay with the loop's thread,
** whose handlers and waits expect them.
*/
static int start_helper(lookup *lk) {
  pthread_attr_t attr;
  pthread_t thread;
  sigset_t all, old;
  if (pthread_attr_init(&attr) != 0) return 0;
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int started = pthread_create(&thread, &attr, helper_main, lk) == 0;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  return started;
}

/*
** Hands lk to a helper: a new one while fewer than RESOLVER_THREADS run,
** else the queue.  Returns 0 if no helper runs and none could be started.
*/
static int submit(lookup *lk) {
  pthread_once(&fork_handlers_once, install_fork_handlers);
  pthread_mutex_lock(&queue_lock);
  int start = helpers < RESOLVER_THREADS;
  if (start) helpers++;
  pthread_mutex_unlock(&queue_lock);
  if (start && start_helper(lk)) return 1;
  pthread_mutex_lock(&queue_lock);
  if (start) helpers--;
  int queued = helpers > 0; /* a running helper will take it */
  if (queued) {
    if (queue_tail != NULL)
      queue_tail->next_queued = lk;
    else
      queue_head = lk;
    queue_tail = lk;
  }
  pthread_mutex_unlock(&queue_lock);
  return queued;
}

/*
** Starts looking host/service up on a helper and pushes the lookup's
** userdata; returns the lookup, or NULL (nothing pushed) with *err set:
** an errno when no descriptor was left for the lookup's eventfd (the call
** fails with it: resolving in place would block the loop only to fail for
** the same reason), or 0 when no helper runs or could be started and the
** caller resolves in place.
*/
static lookup *lookup_start(lua_State *L, const char *host, const char *service,
                            const struct addrinfo *hints, int *err) {
  sweep_orphans();
  *err = 0;
  /* the userdata first: if Lua runs out of memory here, nothing is lost */
  lookup_box *box = (lookup_box *)lua_newuserdatauv(L, sizeof *box, 0);
  box->lk = NULL;
  if (luaL_newmetatable(L, CSOCK_LOOKUP)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__close");
  }
  lua_setmetatable(L, -2);
  lookup *lk = (lookup *)calloc(1, sizeof *lk);
  int failed = lk == NULL;
  if (lk != NULL) {
    lk->host = dup_or_null(host, &failed);
    lk->service = dup_or_null(service, &failed);
    lk->hints = *hints;
    lk->pid = getpid();
    loop_watch_init(&lk->watch); /* efd -1 */
    if (!failed) {
      lk->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (lk->efd < 0 && (errno == EMFILE || errno == ENFILE)) *err = errno;
    }
    failed = lk->efd < 0 || !submit(lk);
  }
  if (failed) {
    if (lk != NULL) lookup_free(lk);
    lua_pop(L, 1);
    return NULL;
  }
  box->lk = lk;
  /* to-be-closed: a task cancelled meanwhile lets go of the lookup as its
     coroutine is closed, so a queued one is dropped, not left to the collector */
  lua_toclose(L, -1);
  return lk;
}

/*
** Drops the lookup's to-be-closed box at top + 1 and what lies above it.
** lua_closeslot first: Lua 5.4.4's lua_settop keeps a pointer into the
** stack across the __close it calls, which may reallocate the stack
** (upstream bug "'lua_settop' may use a pointer to stack invalidated by
** 'luaF_close'"; Debian 12 ships 5.4.4).
*/
static void drop_box(lua_State *L, int top) {
  lua_closeslot(L, top + 1);
  lua_settop(L, top);
}

/*
** Waits for the lookup whose userdata is at top + 1; k goes on when it is
** done or the deadline passed.  Returns only on a failure to wait.
*/
static int lookup_wait(lua_State *L, lookup *lk, int top, double deadline, lua_KFunction k,
                       csock_socket *for_sock) {
  if (for_sock != NULL) loop_wait_also(L, &for_sock->watch); /* its close ends the wait */
  int e = loop_wait(L, &lk->watch, CSOCK_READ, deadline, (lua_KContext)top, k);
  loop_wait_also(L, NULL);
  box_release((lookup_box *)lua_touserdata(L, top + 1));
  drop_box(L, top);
  return csock_failure(L, e);
}

/*
** In a continuation: the finished lookup at top + 1, or NULL after pushing
** the error result (a timeout, or a name that does not resolve) and
** releasing it.
*/
static lookup *lookup_result(lua_State *L, int top, int *nres) {
  lookup_box *box = (lookup_box *)lua_touserdata(L, top + 1);
  lookup *lk = box->lk;
  int woken = loop_woken(L);
  if (woken < 0) { /* the deadline passed, or the socket was closed */
    box_release(box);
    drop_box(L, top);
    *nres = woken == -EBADF ? csock_failmsg(L, "socket closed", EBADF) : csock_failure(L, woken);
    return NULL;
  }
  /* woken by the thread's write, its last step but one -- unless this is a
     child forked meanwhile, where no thread will ever finish it */
  int lost = 0;
  while (!lookup_finished(lk) && !lost) {
    lost = lk->pid != getpid();
    if (!lost) sched_yield();
  }
  if (lost || lk->rc != 0) {
    int gai = lost ? EAI_AGAIN : lk->rc == EAI_SYSTEM ? lk->err : lk->rc;
    box_release(box);
    drop_box(L, top);
    *nres = addr_pusherror(L, gai);
    return NULL;
  }
  return lk;
}

/* ---------------------------------------------------------------- bind, connect, sendto */

static int again_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  int top = (int)ctx, nres;
  lookup *lk = lookup_result(L, top, &nres);
  if (lk == NULL) return nres;
  lua_CFunction again = lk->again;
  addr_push_resolved(L, lk->res->ai_addr, lk->res->ai_addrlen);
  lua_replace(L, lk->idx); /* in place of the name: for this call only */
  box_release((lookup_box *)lua_touserdata(L, top + 1));
  drop_box(L, top);
  /* closed by another task meanwhile (the wait ends then, see lookup_wait) */
  if (((const csock_socket *)lua_touserdata(L, 1))->fd < 0)
    return csock_failmsg(L, "socket closed", EBADF);
  return again(L); /* its addr_from_args takes the address at idx */
}

/* No helper could start: the name is resolved here, blocking, and the
   method called again with the address in its place. */
static int resolve_here(lua_State *L, int idx, const struct addrinfo *hints, lua_CFunction again) {
  struct addrinfo *res = NULL;
  int r = getaddrinfo(lua_tostring(L, idx), NULL, hints, &res);
  if (r != 0) return addr_pusherror(L, r == EAI_SYSTEM ? errno : r);
  addr_push_resolved(L, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  lua_replace(L, idx);
  return again(L);
}

/*
** The host argument at idx of the running method (bind, connect, sendto)
** is a name: look it up while the task waits, then call again(L) with the
** address in the name's place (addr_push_resolved).  Where no thread can be started, the
** method is told to resolve the name in place.
*/
int resolve_then(lua_State *L, int idx, int family, int socktype, double deadline,
                 lua_CFunction again) {
  int top = lua_gettop(L);
  struct addrinfo hints;
  addr_name_hints(&hints, family, socktype);
  int err;
  lookup *lk = lookup_start(L, lua_tostring(L, idx), NULL, &hints, &err);
  if (lk == NULL && err != 0) return csock_failure(L, err);
  if (lk == NULL) return resolve_here(L, idx, &hints, again);
  lk->again = again;
  lk->idx = idx;
  return lookup_wait(L, lk, top, deadline, again_k, (csock_socket *)lua_touserdata(L, 1));
}

/* ---------------------------------------------------------------- getaddrinfo */

static int list_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  int top = (int)ctx, nres;
  lookup *lk = lookup_result(L, top, &nres);
  if (lk == NULL) return nres;
  addr_push_list(L, lk->res);
  box_release((lookup_box *)lua_touserdata(L, top + 1));
  return 1;
}

/*
** csock.getaddrinfo of a name inside a task: the address list, looked up
** while the task waits.  Returns -1 when no thread could be started.
*/
static int resolve_list(lua_State *L, const char *host, const char *service,
                        const struct addrinfo *hints) {
  int top = lua_gettop(L);
  int err;
  lookup *lk = lookup_start(L, host, service, hints, &err);
  if (lk == NULL && err != 0) return csock_failure(L, err);
  if (lk == NULL) return -1;
  return lookup_wait(L, lk, top, -1, list_k, NULL);
}

/* ---------------------------------------------------------------- csock.getaddrinfo */

static int hint_field(lua_State *L, int idx, const char *name, int dflt) {
  int t = lua_getfield(L, idx, name);
  int v = dflt;
  if (t != LUA_TNIL) {
    if (!lua_isinteger(L, -1))
      csock_argerror(L, idx, lua_pushfstring(L, "hint '%s' must be an integer", name));
    v = (int)lua_tointeger(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static int is_numeric(const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* csock.getaddrinfo(host, service [, hints]): names inside a task are looked up on a helper thread.
 */
int resolve_getaddrinfo(lua_State *L) {
  const char *host = lua_isnoneornil(L, 1) ? NULL : addr_checkstring(L, 1, "host");
  const char *service = NULL;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    lua_Integer port = csock_checkinteger(L, 2);
    csock_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range");
    service = lua_tostring(L, 2); /* converts in place */
  } else if (!lua_isnoneornil(L, 2)) {
    service = addr_checkstring(L, 2, "service");
  }
  csock_argcheck(L, host || service, 1, "host or service expected");
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  if (!lua_isnoneornil(L, 3)) {
    csock_checktype(L, 3, LUA_TTABLE);
    hints.ai_family = hint_field(L, 3, "family", AF_UNSPEC);
    hints.ai_socktype = hint_field(L, 3, "socktype", SOCK_STREAM);
    hints.ai_protocol = hint_field(L, 3, "protocol", 0);
    hints.ai_flags = hint_field(L, 3, "flags", 0);
  }
  /* "*" is any address, as for bind: glibc reads it as no host, which
     without AI_PASSIVE is the loopback address */
  if (host != NULL && strcmp(host, "*") == 0) hints.ai_flags |= AI_PASSIVE;
#ifdef CSOCK_NO_RESOLVER /* fuzzing builds never start a lookup thread */
  int in_task = 0;
#else
  int in_task = loop_in_task(L);
#endif
  if (host != NULL && in_task && !is_numeric(host)) {
    int n = resolve_list(L, host, service, &hints);
    if (n >= 0) return n;
  }
  int r = getaddrinfo(host, service, &hints, &res);
  if (r != 0) return addr_pusherror(L, r == EAI_SYSTEM ? errno : r);
  addr_push_list(L, res);
  freeaddrinfo(res);
  return 1;
}
