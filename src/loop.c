/*
** loop.c - the scheduler: tasks (Lua coroutines), a ready queue, a min-heap
** of timers, and the one wait function every blocking method goes through.
** Task handles are task.c's and csock.loop() is embed.c's.
**
** The loop owns the watchers (csock_watch, csock.h): what a socket or a
** lookup's eventfd needs of the poller, read and written here alone.  A
** watcher is registered with the poller (backend.h) at its first wait in
** a loop and stays registered until its descriptor closes; the events the
** backend hands back point at it.
**
** Phases of one turn of the loop (libuv style):
**   1. resume the tasks that were ready when the turn began (a task made
**      ready during the turn waits for the next one, so a busy task cannot
**      starve timers or I/O);
**   2. poll for I/O, without waiting if tasks are ready, else up to the
**      nearest timer;
**   3. make ready the tasks whose descriptors are ready, then the tasks
**      whose deadlines have passed.
** No Lua code runs in phases 2 and 3, so no socket can be collected while
** the loop walks the events that point at it.
*/
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"
#include "backend.h"

#define EVENT_BATCH 256
#define LAST_TRACEBACK "csock.lasttraceback"

/* Lua 5.4.6 renamed lua_resetthread and gave it a second argument. */
#if LUA_VERSION_RELEASE_NUM >= 50406
#define close_thread(co, from) lua_closethread(co, from)
#else
#define close_thread(co, from) ((void)(from), lua_resetthread(co))
#endif

/* Mark the signal pipe and an embedded loop's timerfd among the pointers epoll hands back. */
static char signal_marker, timer_marker;

static _Thread_local csock_loop *running;
static _Thread_local csock_loop *loops; /* every live loop of this thread */
static unsigned generation;

static void loops_add(csock_loop *lp) {
  lp->prev_loop = NULL;
  lp->next_loop = loops;
  if (loops) loops->prev_loop = lp;
  loops = lp;
}

static void loops_remove(csock_loop *lp) {
  if (lp->prev_loop)
    lp->prev_loop->next_loop = lp->next_loop;
  else
    loops = lp->next_loop;
  if (lp->next_loop) lp->next_loop->prev_loop = lp->prev_loop;
}

/* ---------------------------------------------------------------- heap */

/*
** The heap holds each timer's deadline beside its task: a task carries no
** deadline (8 bytes of every idle connection's), and sifting compares
** deadlines in the array without touching the tasks; only a tie reads
** their seqs.
*/
static int heap_less(const heap_entry *a, const heap_entry *b) {
  /* the difference of two seqs, read as signed, orders them across a wrap of
     the counter, as long as no two live timers are 2^31 insertions apart */
  return a->deadline < b->deadline ||
         (a->deadline == b->deadline && (int32_t)(a->task->seq - b->task->seq) < 0);
}

/* Where a loop's seq counter starts: 256 insertions short of its wrap, so that the wrap comes
   in every run that sets a few hundred timers (the specs' among them), not only after four
   billion, days into a server's life. */
#define SEQ_START (UINT32_MAX - 255u)

static void heap_set(csock_loop *lp, size_t i, heap_entry e) {
  lp->heap[i] = e;
  e.task->heap_pos = (unsigned)(i + 1);
}

static void heap_up(csock_loop *lp, size_t i) {
  heap_entry e = lp->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!heap_less(&e, &lp->heap[parent])) break;
    heap_set(lp, i, lp->heap[parent]);
    i = parent;
  }
  heap_set(lp, i, e);
}

static void heap_down(csock_loop *lp, size_t i) {
  heap_entry e = lp->heap[i];
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= lp->heap_len) break;
    if (child + 1 < lp->heap_len && heap_less(&lp->heap[child + 1], &lp->heap[child])) child++;
    if (!heap_less(&lp->heap[child], &e)) break;
    heap_set(lp, i, lp->heap[child]);
    i = child;
  }
  heap_set(lp, i, e);
}

static int heap_push(csock_loop *lp, csock_task *t, double deadline) {
  if (lp->heap_len == lp->heap_cap) {
    size_t cap = lp->heap_cap ? lp->heap_cap * 2 : 64;
    heap_entry *h = realloc(lp->heap, cap * sizeof *h);
    if (h == NULL) return -ENOMEM;
    lp->heap = h;
    lp->heap_cap = cap;
  }
  t->seq = lp->seq++;
  heap_entry e = {deadline, t};
  heap_set(lp, lp->heap_len++, e);
  heap_up(lp, lp->heap_len - 1);
  return 0;
}

static void heap_remove(csock_loop *lp, csock_task *t) {
  size_t i = t->heap_pos - 1;
  t->heap_pos = 0;
  heap_entry last = lp->heap[--lp->heap_len];
  if (i == lp->heap_len) return;
  heap_set(lp, i, last);
  if (i > 0 && heap_less(&last, &lp->heap[(i - 1) / 2]))
    heap_up(lp, i);
  else
    heap_down(lp, i);
}

/* ---------------------------------------------------------------- queue */

static void enqueue(csock_loop *lp, csock_task *t) {
  t->state = T_READY;
  t->link.next_ready = NULL;
  if (lp->ready_tail)
    lp->ready_tail->link.next_ready = t;
  else
    lp->ready_head = t;
  lp->ready_tail = t;
}

static void unjoin(csock_task *t) {
  csock_task **p = &t->on.task->joiners;
  while (*p && *p != t) p = &(*p)->link.next_joiner;
  if (*p) *p = t->link.next_joiner;
  t->wait_kind = W_NONE;
  t->on.task = NULL;
  t->link.next_joiner = NULL;
}

static void waitlist_remove(csock_task *t) {
  csock_waitlist *wl = t->on.waitlist;
  csock_task *prev = t->link.waiters.prev, *next = t->link.waiters.next;
  if (prev)
    prev->link.waiters.next = next;
  else
    wl->head = next;
  if (next)
    next->link.waiters.prev = prev;
  else
    wl->tail = prev;
  t->wait_kind = W_NONE;
  t->on.waitlist = NULL;
  t->link.waiters.prev = t->link.waiters.next = NULL;
}

/* Drops the link loop_wait_also made, whatever ends the wait. */
static void unlink_also(csock_task *t) {
  if (t->also_watch == NULL) return;
  if (t->also_watch->writer == t) t->also_watch->writer = NULL;
  t->also_watch = NULL;
}

/* Takes t out of the queue of tasks waiting on one direction of a watcher (slot: its head). */
static void watch_unlink(csock_task **slot, csock_task *t) {
  for (; *slot != NULL; slot = &(*slot)->link.next_watcher)
    if (*slot == t) {
      *slot = t->link.next_watcher;
      break;
    }
  t->link.next_watcher = NULL;
}

/*
** Makes a waiting task ready; reason is what its continuation will see.
** The task goes to its own loop's queue, whichever loop noticed the event:
** a join or a socket may link tasks of two embedded loops.
*/
void loop_wake_task(csock_task *t, int reason) {
  unlink_also(t); /* also for a task a cancel queued without a wait */
  if (t->state != T_WAITING) return;
  csock_loop *lp = t->loop;
  double deadline = t->heap_pos ? task_deadline(t) : -1;
  csock_watch *w = wait_watch(t);
  if (w) {
    watch_unlink(t->wait_dir == CSOCK_READ ? &w->reader : &w->writer, t);
    t->wait_kind = W_NONE;
    t->on.watch = NULL;
    lp->io_waiters--;
  }
  if (t->heap_pos) heap_remove(lp, t);
  if (t->wait_kind == W_JOIN) unjoin(t);
  if (t->wait_kind == W_COND) waitlist_remove(t);
  t->on.deadline = deadline; /* W_NONE now: for its continuation (loop_op_deadline) */
  t->wake = (unsigned char)-reason;
  enqueue(lp, t);
}

/* Wakes every task queued on direction dir of w, oldest first. */
static void wake_queue(csock_watch *w, int dir, int reason) {
  csock_task **slot = dir == CSOCK_READ ? &w->reader : &w->writer;
  csock_task *t = *slot;
  *slot = NULL; /* the whole queue at once: each wake below finds it empty, nothing to walk */
  while (t != NULL) {
    csock_task *next = NULL;
    /* a loop_wait_also link is alone, and its link field is another wait's */
    if (t->wait_kind == W_WATCH && t->on.watch == w) {
      next = t->link.next_watcher;
      t->link.next_watcher = NULL;
    }
    loop_wake_task(t, reason);
    t = next;
  }
}

/* ---------------------------------------------------------------- waits */

/* The task running L: in its own coroutine, or in one it resumed through
   coro.c's coroutine.resume / wrap. */
csock_task *loop_current_task(lua_State *L) {
  csock_loop *lp = running;
  if (lp && lp->current && lp->thread == L) return lp->current;
  return NULL;
}

/* The task running L, if L may yield to the loop now. */
csock_task *loop_yieldable_task(lua_State *L) {
  csock_task *t = loop_current_task(L);
  return t && t->loop->passable && lua_isyieldable(L) ? t : NULL;
}

int loop_in_task(lua_State *L) { return loop_yieldable_task(L) != NULL; }

int loop_woken(lua_State *L) {
  csock_task *t = loop_current_task(L);
  if (t == NULL) return 0;
  int w = -(int)t->wake;
  t->wake = 0;
  return w;
}

/* ---------------------------------------------------------------- watchers */

/* A watcher of a descriptor not yet known to any poller; its owner sets fd. */
void loop_watch_init(csock_watch *w) {
  memset(w, 0, sizeof *w);
  w->fd = -1;
  w->rready = w->wready = 1;
}

/*
** Whether a call on w's descriptor in direction dir is worth trying before
** waiting.  The poller is edge-triggered, so once a read came back short
** (or with EAGAIN) new bytes are sure to bring a new edge: until it comes,
** trying recv again would only cost a system call that fails with EAGAIN.
** The flags mean something only while w is registered with the running
** loop.
*/
int loop_ready(const csock_watch *w, int dir) {
  csock_loop *lp = running;
  if (lp == NULL || !w->registered || w->gen != lp->gen) return 1;
  return dir == CSOCK_READ ? w->rready : w->wready;
}

/* A call in direction dir met EAGAIN, or a write went short: the next edge says when to retry. */
void loop_blocked(csock_watch *w, int dir) {
  if (dir == CSOCK_READ)
    w->rready = 0;
  else
    w->wready = 0;
}

/*
** A stream read came back short: the socket is drained, and new bytes will
** bring a new edge -- unless the peer's FIN is already queued (a read
** stops short before it and no further edge comes), as nginx's
** pending_eof knows.
*/
void loop_drained(csock_watch *w) {
  if (!w->rdhup) w->rready = 0;
}

/* Whether a task waits on w in direction dir (loop_wait would raise busy for another). */
int loop_waiting(const csock_watch *w, int dir) {
  return (dir == CSOCK_READ ? w->reader : w->writer) != NULL;
}

/* Waits outside the loop: poll(2) on one descriptor until the deadline. */
static int poll_wait(csock_watch *w, int dir, double deadline) {
  struct pollfd p;
  p.fd = w->fd;
  p.events = dir == CSOCK_READ ? POLLIN : POLLOUT;
  for (;;) {
    int ms = -1;
    if (deadline >= 0) {
      double left = deadline - csock_now();
      if (left <= 0) return -ETIMEDOUT;
      ms = (int)ceil(left * 1000);
    }
    int r = poll(&p, 1, ms);
    if (r > 0) {
      if (dir == CSOCK_READ)
        w->rready = 1;
      else
        w->wready = 1;
      return 0;
    }
    if (r < 0 && errno != EINTR) return -errno;
    if (r < 0) return 0; /* interrupted: let the caller retry its call */
  }
}

/* Suspends the task until the scheduler picks it again (cancel or yield). */
int loop_yield_ready(lua_State *L, csock_task *t, lua_KContext ctx, lua_KFunction k) {
  enqueue(t->loop, t);
  return lua_yieldk(L, 0, ctx, k);
}

/*
** Registers w with lp's poller if it is not yet, widened to write interest
** when dir asks for it: 0 or -errno.
*/
static int watch_register(csock_loop *lp, csock_watch *w, int dir) {
  int known = w->registered && w->gen == lp->gen;
  if (known && (dir != CSOCK_WRITE || w->wwatch)) return 0;
  int r =
      backend_add(lp->poller, w->fd, w, known && w->wwatch ? CSOCK_WRITE : (unsigned)dir, known);
  if (r < 0) return r;
  if (!known) w->wwatch = 0;
  if (dir == CSOCK_WRITE) w->wwatch = 1;
  w->registered = 1;
  w->gen = lp->gen;
  return 0;
}

/*
** The one wait of every blocking method: w's descriptor must become ready
** for dir before deadline (< 0: never times out).  Inside a task it
** yields, and k runs when the loop resumes the task (loop_woken tells it
** why); it never returns.  Elsewhere it polls and returns 0 (try again),
** -ETIMEDOUT or -errno.
*/
static int wait_on(lua_State *L, csock_watch *w, int dir, double deadline, lua_KContext ctx,
                   lua_KFunction k, int shared) {
  csock_task *t = loop_yieldable_task(L);
  if (t == NULL) return poll_wait(w, dir, deadline);
  csock_loop *lp = t->loop;
  if (t->cancel) {
    t->on.deadline = deadline; /* for k (loop_op_deadline), as loop_wake_task leaves it */
    return loop_yield_ready(L, t, ctx, k);
  }
  if (deadline >= 0 && deadline <= csock_now()) return -ETIMEDOUT;
  csock_task **slot = dir == CSOCK_READ ? &w->reader : &w->writer;
  csock_task *head = *slot;
  /* queue only behind a task that waits the same shared way (not behind
     an exclusive read, nor a loop_wait_also link) */
  if (head != NULL && head != t &&
      !(shared && head->wait_kind == W_WATCH && head->on.watch == w && head->wait_shared))
    return luaL_error(L, "socket is busy: another task is %s it",
                      dir == CSOCK_READ ? "reading from" : "writing to");
  int r = watch_register(lp, w, dir);
  if (r < 0) return r;
  if (deadline >= 0 && heap_push(lp, t, deadline) < 0) return -ENOMEM;
  while (*slot != NULL) slot = &(*slot)->link.next_watcher; /* to the end of the queue */
  *slot = t;
  t->link.next_watcher = NULL;
  t->wait_shared = (unsigned char)shared;
  t->wait_kind = W_WATCH;
  t->on.watch = w;
  t->wait_dir = dir;
  lp->io_waiters++;
  t->state = T_WAITING;
  t->wake = 0;
  return lua_yieldk(L, 0, ctx, k);
}

/*
** The deadline of the operation a continuation resumes: the one its last
** wait was given.  A socket does not keep its operations' deadlines
** (every idle connection would pay for them): a task runs one operation
** at a time, and loop_wake_task leaves the deadline of the wait it ends in
** the task's `on`, which a running task does not use.
*/
double loop_op_deadline(lua_State *L) {
  csock_task *t = loop_current_task(L);
  return t != NULL ? t->on.deadline : -1;
}

int loop_wait(lua_State *L, csock_watch *w, int dir, double deadline, lua_KContext ctx,
              lua_KFunction k) {
  return wait_on(L, w, dir, deadline, ctx, k, 0);
}

/*
** loop_wait for a call any number of tasks may wait in at once (accept,
** recv, recvfrom): a task that finds another waiting queues behind it, and
** readiness or a close wakes the whole queue; each task tries its call
** again, and those that find nothing wait again.
*/
int loop_wait_shared(lua_State *L, csock_watch *w, int dir, double deadline, lua_KContext ctx,
                     lua_KFunction k) {
  return wait_on(L, w, dir, deadline, ctx, k, 1);
}

/*
** The next wait of L's task (on some other descriptor) should also end,
** with -EBADF, if w is forgotten (its socket closed) meanwhile: a method
** waiting for a name lookup before it can touch the socket (resolve.c).
** w must be free for writing; the link goes when the task wakes for any
** reason.  w NULL undoes it when the wait could not start.
*/
void loop_wait_also(lua_State *L, csock_watch *w) {
  csock_task *t = loop_yieldable_task(L);
  if (t == NULL) return;
  if (w == NULL) {
    unlink_also(t);
  } else if (w->writer == NULL) {
    w->writer = t;
    t->also_watch = w;
  }
}

/*
** In a process just forked from one whose loop is running (csock.workers):
** the poller may be the parent's too (an epoll instance survives fork
** shared), and the two would take each other's events.  backend_renew
** gives the child one of its own, the loop re-registers what its tasks
** wait on, and every other watcher registers again at its next wait (a
** new generation).
*/

static int visit_tasks(lua_State *L, csock_loop *lp, int (*fn)(csock_task *, void *), void *arg);

/* Registers the watcher t waits on with the loop arg's renewed poller. */
static int reregister(csock_task *t, void *arg) {
  csock_loop *lp = (csock_loop *)arg;
  csock_watch *w = wait_watch(t);
  if (w == NULL || w->fd < 0) return 0;
  unsigned dirs = (w->reader ? CSOCK_READ : 0) | (w->writer ? CSOCK_WRITE : 0);
  if (backend_add(lp->poller, w->fd, w, dirs, 0) == 0) {
    w->registered = 1;
    w->gen = lp->gen;
    w->wwatch = (dirs & CSOCK_WRITE) != 0;
  }
  return 0;
}

void loop_after_fork(void) {
  csock_loop *lp = running;
  if (lp == NULL) return;
  if (backend_renew(lp->poller) < 0) return;
  lp->gen = ++generation;
  lp->signals_watched = 0;
  loop_watch_signals(lp);
  visit_tasks(lp->L, lp, reregister, lp);
}

/*
** A read() that takes bytes at a cursor into s's buffer (io.c) begins:
** until loop_read_end, any other read of s -- another task's, or one that
** a finalizer run by the read's own allocations makes -- must fail as
** busy, or it would move the bytes under the cursor.  When a task reads,
** the flag is the task's (read_sock): a task that ends part-way
** (cancelled while it waits, failed) gives it back.  The socket does not
** point back at its reader (every idle connection would pay for it):
** the read ends in its own task, which loop_current_task finds, and a
** close finds the reader with loop_read_abandon.  Outside a task only a
** memory error raised part-way could leave the flag set; the socket then
** stays busy, which is safe.
*/
void loop_read_begin(lua_State *L, csock_socket *s) {
  s->rbusy = 1;
  csock_task *t = loop_current_task(L);
  if (t != NULL && t->read_sock == NULL) t->read_sock = s;
}

/* Lets go of s's read: the flag, the cursor, and the task's hold. */
static void read_release(csock_task *t, csock_socket *s) {
  s->rbusy = 0;
  buf_rewind(s->rbuf);
  if (t != NULL && t->read_sock == s) t->read_sock = NULL;
}

/* The read under way on s ends; L is the thread that read. */
void loop_read_end(lua_State *L, csock_socket *s) { read_release(loop_current_task(L), s); }

/* t ends with a read under way: the socket is free for others again. */
static void drop_read(csock_task *t) {
  if (t->read_sock != NULL) read_release(t, t->read_sock);
}

/* Whether t holds the read of socket s, and if so lets go of it (also a visit_tasks visitor). */
static int release_if_reader(csock_task *t, void *s) {
  if (t == NULL || t->read_sock != s) return 0;
  read_release(t, (csock_socket *)s);
  return 1;
}

/*
** s closes with its read flag set, from any thread of the state: the task
** that holds the read lets go of it.  That task is mostly at hand: the one
** running (a finalizer its read ran closes s), or the one waiting on s
** (for a TLS read, maybe to write).  Otherwise it is one that was woken
** and has not run yet -- its read then sees the socket closed and lets go
** itself -- or one whose read an error ended (a memory error caught by
** pcall), which would hold s until it ends: every task is searched then,
** rarely, so that none keeps a pointer the collector may free.
*/
void loop_read_abandon(lua_State *L, csock_socket *s) {
  if (release_if_reader(loop_current_task(L), s) || release_if_reader(s->watch.reader, s) ||
      release_if_reader(s->watch.writer, s))
    return;
  for (csock_loop *lp = loops; lp != NULL; lp = lp->next_loop)
    if (visit_tasks(L, lp, release_if_reader, s)) return;
  read_release(NULL, s);
}

/*
** Called before w's descriptor closes: leave the pollers and wake whoever
** waits on it (with -EBADF).  close(2) drops a registration by itself only
** when no other descriptor shares the open file.  shared: another process
** may hold it (a socket made before csock.workers forked, one systemd
** passed), so an entry left behind would hand the poller a pointer to
** freed memory at the file's next event: it leaves every live loop's set
** by hand (one, as a rule; ENOENT from a loop that never had it).  A
** descriptor of this process alone leaves with its close, and a short
** connection is spared the epoll_ctl.
*/
void loop_forget(csock_watch *w, int shared) {
  if (w->registered && w->fd >= 0 && shared)
    for (csock_loop *lp = loops; lp; lp = lp->next_loop) backend_del(lp->poller, w->fd);
  w->registered = 0;
  /* the waiters may belong to an embedded loop that is not running now:
     waking only touches that loop's queue, no Lua runs */
  wake_queue(w, CSOCK_READ, -EBADF);
  wake_queue(w, CSOCK_WRITE, -EBADF);
}

static int sleep_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L, (void)status, (void)ctx;
  loop_woken(L);
  return 0;
}

static void nap(double secs) {
  if (secs > 1e9) secs = 1e9;
  struct timespec ts;
  ts.tv_sec = (time_t)secs;
  ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

/*
** Pauses the caller for secs: a task yields (k runs when the timer
** fires), anything else sleeps and gets 0 back.
*/
int loop_pause(lua_State *L, double secs, lua_KContext ctx, lua_KFunction k) {
  csock_task *t = loop_yieldable_task(L);
  if (t == NULL) {
    nap(secs);
    return 0;
  }
  if (t->cancel) return loop_yield_ready(L, t, ctx, k);
  if (heap_push(t->loop, t, csock_now() + secs) < 0) return -ENOMEM;
  t->state = T_WAITING;
  return lua_yieldk(L, 0, ctx, k);
}

/*
** Suspends the task running L at the end of wl until loop_wake_first or
** loop_wake_all picks it (loop_woken: 0) or the deadline passes
** (-ETIMEDOUT); k goes on then.  Returns -EPERM outside a task, where
** nothing could ever wake the caller.
*/
int loop_wait_on(lua_State *L, csock_waitlist *wl, double deadline, lua_KContext ctx,
                 lua_KFunction k) {
  csock_task *t = loop_yieldable_task(L);
  if (t == NULL) return -EPERM;
  if (t->cancel) return loop_yield_ready(L, t, ctx, k);
  if (deadline >= 0 && deadline <= csock_now()) return -ETIMEDOUT;
  if (deadline >= 0 && heap_push(t->loop, t, deadline) < 0) return -ENOMEM;
  t->wait_kind = W_COND;
  t->on.waitlist = wl;
  t->link.waiters.prev = wl->tail;
  t->link.waiters.next = NULL;
  if (wl->tail)
    wl->tail->link.waiters.next = t;
  else
    wl->head = t;
  wl->tail = t;
  t->state = T_WAITING;
  return lua_yieldk(L, 0, ctx, k);
}

/* The task that waits on the same list after t, or NULL. */
const csock_task *loop_next_waiter(const csock_task *t) { return t->link.waiters.next; }

/* Makes the task that has waited longest on wl ready; 0 if none waits. */
int loop_wake_first(csock_waitlist *wl) {
  csock_task *t = wl->head;
  if (t == NULL) return 0;
  loop_wake_task(t, 0);
  return 1;
}

/* Makes every task waiting on wl ready, oldest first; returns how many. */
int loop_wake_all(csock_waitlist *wl) {
  int n = 0;
  while (loop_wake_first(wl)) n++;
  return n;
}

/* csock.sleep(seconds): suspends the task, or blocks the thread outside. */
int loop_sleep(lua_State *L) {
  lua_Number secs = csock_checknumber(L, 1);
  csock_checkduration(L, 1, secs, "seconds");
  csock_task *t = loop_yieldable_task(L);
  if (t != NULL && secs <= 0)
    return loop_yield_ready(L, t, 0, sleep_k); /* every ready task first */
  if (loop_pause(L, secs, 0, sleep_k) < 0) return luaL_error(L, "not enough memory");
  return 0;
}

/* ---------------------------------------------------------------- tasks */

static void set_parked(lua_State *co, int on);

/*
** A live task's handle must stay reachable for the collector: nothing else
** may refer to it while the task waits.  luaL_ref on the registry took 500
** instructions per task with its unref; the handles are kept instead on the
** stack of an anchor thread (one per state), a slot each, found by index.
** Free slots hold the index of the next free one (0 ends the list), and the
** list's head lives in the thread's LUA_EXTRASPACE.  A task past what one
** stack holds (LUAI_MAXSTACK, about a million) goes to an overflow table
** (luaL_ref; one per state, in the registry): its ref is then negative
** (OVER_REF).  The anchors are also the list of every live task
** (visit_tasks): a list threaded through the tasks would cost each one two
** pointers, and each idle connection holds a task.
*/
static char pool_key, anchor_key, overflow_key;
static char task_meta_key; /* registry: the tasks' metatable, also under CSOCK_TASK */

/* The handles the anchor thread holds before the overflow table takes the rest: as many as its
   stack can; a test build may set a few (-DCSOCK_ANCHOR_SLOTS=8) to exercise the overflow. */
#ifndef CSOCK_ANCHOR_SLOTS
#define CSOCK_ANCHOR_SLOTS INT_MAX
#endif

#define OVER_REF(r) (-3 - (r)) /* an overflow reference r >= 1 kept in t->ref; its own inverse */

/* Pushes the overflow table, made on first use (may raise: memory). */
static void push_overflow(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &overflow_key) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &overflow_key);
}

/* The state's thread for key (pool or anchors), made on first use with
   room for n values (may raise: memory); *cache keeps it for the loop. */
static lua_State *state_thread(lua_State *L, void *key, int n, lua_State **cache) {
  if (*cache != NULL) return *cache;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) != LUA_TTHREAD) {
    lua_pop(L, 1);
    lua_State *th = lua_newthread(L);
    *(intptr_t *)lua_getextraspace(th) = 0; /* a copy of the main thread's */
    if (!lua_checkstack(th, n)) luaL_error(L, "not enough memory");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
  }
  *cache = lua_tothread(L, -1);
  lua_pop(L, 1);
  return *cache;
}

/*
** The anchor thread, made on first use.  Its slot 1 holds the tasks'
** metatable, for loop_task_new: a stack slot is cheaper to read than the
** registry's hash part (lua_rawgetp), and every task reads it.
*/
static lua_State *anchors_of(lua_State *L, csock_loop *lp) {
  if (lp->anchors != NULL) return lp->anchors;
  lua_State *a = state_thread(L, &anchor_key, 3, &lp->anchors);
  if (lua_gettop(a) == 0) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &task_meta_key);
    lua_xmove(L, a, 1);
  }
  return a;
}

/* Anchors the handle on top of L (popped) as t->ref (>= 2: slot 1 is the metatable's). */
static void anchor_put(lua_State *L, csock_loop *lp, csock_task *t) {
  lua_State *a = anchors_of(L, lp);
  intptr_t *head = (intptr_t *)lua_getextraspace(a);
  if (*head != 0) {
    int slot = (int)*head;
    *head = (intptr_t)lua_tointeger(a, slot);
    lua_xmove(L, a, 1);
    lua_replace(a, slot);
    t->ref = slot;
  } else if (lua_gettop(a) < CSOCK_ANCHOR_SLOTS && lua_checkstack(a, 2)) {
    /* (lua_checkstack: one slot spare for anchor_drop's push) */
    lua_xmove(L, a, 1);
    t->ref = lua_gettop(a);
  } else {
    push_overflow(L);
    lua_insert(L, -2);
    t->ref = OVER_REF(luaL_ref(L, -2));
    lua_pop(L, 1);
  }
}

/* t has ended: its slot is free again. */
static void anchor_drop(csock_loop *lp, csock_task *t) {
  if (t->ref < 0) {
    push_overflow(lp->L); /* there already: no allocation */
    luaL_unref(lp->L, -1, OVER_REF(t->ref));
    lua_pop(lp->L, 1);
  } else {
    lua_State *a = lp->anchors;
    intptr_t *head = (intptr_t *)lua_getextraspace(a);
    lua_pushinteger(a, (lua_Integer)*head);
    lua_replace(a, t->ref);
    *head = t->ref;
  }
  t->ref = LUA_NOREF;
}

/* Pushes the handle kept at ref in the overflow table: out of line, so that
   loop_push_handle stays small enough to inline into every spawn. */
static __attribute__((noinline)) void push_overflowed(lua_State *L, int ref) {
  push_overflow(L);
  lua_rawgeti(L, -1, OVER_REF(ref));
  lua_remove(L, -2);
}

/* Pushes the handle of t (from its anchor while it lives). */
void loop_push_handle(lua_State *L, csock_task *t) {
  if (t->ref < 0) {
    push_overflowed(L, t->ref);
  } else {
    lua_State *a = t->loop->anchors;
    lua_pushvalue(a, t->ref);
    lua_xmove(a, L, 1);
  }
}

/*
** Calls fn(t, arg) for every live task of lp until it returns nonzero (and
** then returns 1): the handles on the anchor thread, top slot first, then
** those in the overflow table, walked on L.  Free slots hold integers and
** slot 1 the metatable, neither a userdata.  fn must not end a task nor
** anchor one (no Lua may run in it).
*/
static int visit_tasks(lua_State *L, csock_loop *lp, int (*fn)(csock_task *, void *), void *arg) {
  lua_State *a = lp->anchors; /* NULL: lp never made a task */
  for (int i = a ? lua_gettop(a) : 0; i >= 2; i--) {
    csock_task *t = (csock_task *)lua_touserdata(a, i);
    if (t != NULL && t->loop == lp && fn(t, arg)) return 1;
  }
  if (!lua_checkstack(L, 3)) return 0;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &overflow_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    csock_task *t = (csock_task *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (t != NULL && t->loop == lp && fn(t, arg)) {
      lua_pop(L, 2);
      return 1;
    }
  }
  lua_pop(L, 1);
  return 0;
}

typedef struct {
  csock_task **v;
  size_t n, cap;
} task_array;

static int collect(csock_task *t, void *arg) {
  task_array *ta = (task_array *)arg;
  if (ta->n < ta->cap) ta->v[ta->n++] = t;
  return 0;
}

static int newer_first(const void *a, const void *b) {
  lua_Integer x = (*(csock_task *const *)a)->id, y = (*(csock_task *const *)b)->id;
  return (x < y) - (x > y);
}

/* Fills v (room for cap) with lp's live tasks, newest first; returns how many. */
static size_t take_tasks(lua_State *L, csock_loop *lp, csock_task **v, size_t cap) {
  task_array ta = {v, 0, cap};
  visit_tasks(L, lp, collect, &ta);
  /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
  qsort(v, ta.n, sizeof *v, newer_first);
  return ta.n;
}

/* lp's live tasks, newest first, in an array of *n to free; NULL when memory ran out. */
static csock_task **tasks_of(csock_loop *lp, size_t *n) {
  /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
  csock_task **v = malloc((lp->alive ? lp->alive : 1) * sizeof *v);
  if (v != NULL) *n = take_tasks(lp->L, lp, v, lp->alive);
  return v;
}

/* Pushes an array of the handles of lp's live tasks, newest first (may raise: memory). */
void loop_push_tasks(lua_State *L, csock_loop *lp) {
  size_t cap = lp->alive ? lp->alive : 1;
  /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
  csock_task **v = (csock_task **)lua_newuserdatauv(L, cap * sizeof *v, 0);
  size_t n = take_tasks(L, lp, v, lp->alive);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    loop_push_handle(L, v[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_remove(L, -2);
}

/*
** Coroutines of finished tasks, reused for new ones.  A task that returned
** leaves its coroutine as good as new: stack empty, upvalues and
** to-be-closed variables closed, status OK, and Lua resumes such a thread
** with a new function on it.  Making one costs the thread, its stack and its
** call records, and the collector frees them all again: a fifth of the
** user-space instructions of a connection that makes one request.  The pool
** is a thread of the state (one per state, in the registry) holding the
** coroutines on its stack; they stay marked parked there, so that no one
** can resume or close one.  A coroutine is not pooled when the script may
** hold it (coroutine.running() inside the task: a new task would show
** under its old identity), when the task failed or was cancelled, or when
** it has a hook of its own.
*/
#define CO_POOL_MAX 64

/* Pushes a coroutine for a new task onto L: a pooled one, or a new one. */
static lua_State *co_take(lua_State *L, csock_loop *lp) {
  lua_State *pool = state_thread(L, &pool_key, CO_POOL_MAX, &lp->pool);
  if (lua_gettop(pool) == 0) return lua_newthread(L);
  lua_xmove(pool, L, 1);
  return lua_tothread(L, -1);
}

/* t returned: its coroutine goes to the pool if nothing else may use it. */
static void co_put(csock_loop *lp, csock_task *t) {
  lua_State *pool = lp->pool, *co = t->co;
  if (pool == NULL || t->seen || lua_gettop(pool) >= CO_POOL_MAX) return;
  if (lua_status(co) != LUA_OK || lua_gettop(co) != 0 || lua_gethook(co) != NULL) return;
  lua_pushthread(co);
  lua_xmove(co, pool, 1);
  set_parked(co, 1);
}

/* coroutine.running() in L: if L is a task's own coroutine, the script now holds it. */
void loop_note_running(lua_State *L) {
  csock_task *t = loop_current_task(L);
  if (t != NULL && t->co == L) t->seen = 1;
}

/*
** Creates a task running the function at index fidx with the values above
** it as arguments (they are moved to the new coroutine), queues it, and
** leaves its handle on the stack.
*/
csock_task *loop_task_new(lua_State *L, csock_loop *lp, int fidx) {
  int nargs = lua_gettop(L) - fidx;
  csock_task *t = (csock_task *)lua_newuserdatauv(L, sizeof *t, UV_COUNT);
  memset(t, 0, sizeof *t);
  t->ref = LUA_NOREF;
  t->state = T_DONE; /* until it is queued below */
  lua_State *a = anchors_of(L, lp);
  lua_pushvalue(a, 1); /* the metatable (luaL_setmetatable would hash its name) */
  lua_xmove(a, L, 1);
  lua_setmetatable(L, -2);
  lua_State *co = co_take(L, lp);
  set_parked(co, 1); /* the loop's alone to resume or close (coro.c) */
  lua_setiuservalue(L, -2, UV_THREAD);
  /* a new thread has room for LUA_MINSTACK values; spawn(f, table.unpack(t)) may bring more */
  if (!lua_checkstack(co, nargs + 1)) luaL_error(L, "too many arguments");
  t->co = co;
  t->loop = lp;
  t->id = ++lp->next_id;
  /* the handle goes to its anchor and comes back from there to fidx once the function and
     its arguments have moved: cheaper than rotating it below them (lua_insert) */
  anchor_put(L, lp, t);
  lua_xmove(L, co, nargs + 1);
  loop_push_handle(L, t);
  lp->alive++;
  enqueue(lp, t);
  return t;
}

/* Ends t (done, failed or cancelled): wake its joiners, drop its anchor. */
static void task_end(csock_loop *lp, csock_task *t, task_state how) {
  t->state = how;
  drop_read(t);
  while (t->joiners) {
    csock_task *j = t->joiners;
    t->joiners = j->link.next_joiner;
    j->link.next_joiner = NULL;
    j->wait_kind = W_NONE;
    j->on.task = NULL;
    loop_wake_task(j, 0);
  }
  lp->alive--;
  set_parked(t->co, 0); /* a coroutine like any other from now on */
  anchor_drop(lp, t);
}

/* Writes "csock: task N (name): traceback" for a task that failed. */
static void task_report(csock_loop *lp, csock_task *t, const char *trace) {
  lua_State *L = lp->L;
  loop_push_handle(L, t);
  if (loop_task_extra(L, -1, EXTRA_NAME) == LUA_TSTRING)
    fprintf(stderr, "csock: task %lld (%s): %s\n", (long long)t->id, lua_tostring(L, -1), trace);
  else
    fprintf(stderr, "csock: task %lld: %s\n", (long long)t->id, trace);
  fflush(stderr);
  lua_pop(L, 2);
}

/* The ephemeron tables of loop.h's EXTRA_ slots, one per slot, in the registry. */
static char extra_keys[EXTRA_COUNT];

/* Pushes the table of slot, made on first use (may raise: memory). */
static void push_extras(lua_State *L, int slot) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &extra_keys[slot]) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k"); /* weak keys: an entry lasts while its handle does */
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &extra_keys[slot]);
}

/* Pushes what the handle at idx keeps in slot (nil if nothing); returns its type. */
int loop_task_extra(lua_State *L, int idx, int slot) {
  idx = lua_absindex(L, idx);
  push_extras(L, slot);
  lua_pushvalue(L, idx);
  int type = lua_rawget(L, -2);
  lua_remove(L, -2);
  return type;
}

/* The value on top of L (popped) becomes what the handle at idx keeps in slot. */
void loop_task_setextra(lua_State *L, int idx, int slot) {
  idx = lua_absindex(L, idx);
  push_extras(L, slot);
  lua_pushvalue(L, idx);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 2);
}

/* ---------------------------------------------------------------- nested coroutines */

/*
** A task may resume coroutines of its own (an iterator made with
** coroutine.wrap, say), and a socket call in one of them should suspend the
** task, not block the thread.  coro.c's resume and wrap tell the loop when
** they run a coroutine for the current task (loop_nest_enter / leave), so
** that a wait in it registers the task and yields.  They then yield their
** own thread in turn, up to the task's coroutine, and the waiting coroutine
** is *parked* (loop_nest_park): listed in the task's nest list and marked
** so that no one else resumes it.  When the loop resumes the task they
** unpark it and resume it where it waited.
** Cancelling the task closes its parked coroutines, innermost first.
** A task's own coroutine is marked from its start to its end: a
** coroutine.close or resume of it by someone else would free, or run
** outside the loop, what the loop still points at (the condition or
** socket it waits on).
*/
/*
** The mark lives in the coroutine itself, in the LUA_EXTRASPACE bytes Lua
** keeps before every thread for the host: marking and unmarking a task's
** coroutine at its start and end through a weak registry set took about a
** thousand instructions per task (a table insert, a removal, rehashes as
** the set grew and shrank, and the collector's sweep of a weak table).
** The slot holds &parked_mark or anything else; a new thread copies the
** main thread's bytes, which are never the mark, so only threads marked
** here read as parked.
*/
static char parked_mark;

/* a Lua built with less extra space than its default would not fit the mark */
_Static_assert(LUA_EXTRASPACE >= sizeof(void *), /* NOLINT(misc-redundant-expression) */
               "a thread has room for the parked mark");

static void *parked_slot_value(lua_State *co) { return *(void **)lua_getextraspace(co); }

/* Marks (on != 0) or unmarks co as parked. */
static void set_parked(lua_State *co, int on) {
  *(void **)lua_getextraspace(co) = on ? &parked_mark : NULL;
}

/* Whether the coroutine on top of L is parked; pops it. */
int loop_nest_parked(lua_State *L) {
  int parked = parked_slot_value(lua_tothread(L, -1)) == &parked_mark;
  lua_pop(L, 1);
  return parked;
}

/* L is about to resume co: if L runs the current task, co runs for it. */
int loop_nest_enter(lua_State *L, lua_State *co, csock_nest *saved) {
  csock_loop *lp = running;
  if (lp == NULL || lp->current == NULL || lp->thread != L) return 0;
  saved->loop = lp;
  saved->thread = L;
  saved->passable = lp->passable;
  lp->thread = co;
  lp->passable = lp->passable && lua_isyieldable(L); /* the way up must yield too */
  return 1;
}

void loop_nest_leave(const csock_nest *saved) {
  saved->loop->thread = saved->thread;
  saved->loop->passable = saved->passable;
}

/*
** The task's nest list, created if need be, on top of L below its handle.
** It takes the coroutine's place as the handle's uservalue, and holds the
** coroutine at index 0: a table only the tasks that wait in a nested
** coroutine make, found without a lookup.
*/
static void push_nest(lua_State *L, csock_task *t) {
  loop_push_handle(L, t);
  if (lua_getiuservalue(L, -1, UV_NEST) == LUA_TTABLE) return;
  lua_createtable(L, 1, 1);
  lua_insert(L, -2);
  lua_rawseti(L, -2, 0); /* the coroutine, still reachable from the handle */
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, -3, UV_NEST);
}

/*
** The coroutine on top of L (popped), resumed by L for the current task,
** has just yielded: whether it did so for a wait of the task (then it is
** parked, and L must yield too).  A plain coroutine.yield leaves the task
** running.
*/
int loop_nest_park(lua_State *L) {
  csock_loop *lp = running;
  csock_task *t = lp ? lp->current : NULL;
  if (t == NULL || t->state == T_RUNNING || task_ended(t)) {
    lua_pop(L, 1);
    return 0;
  }
  push_nest(L, t);
  lua_pushvalue(L, -3);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 2);
  set_parked(lua_tothread(L, -1), 1);
  lua_pop(L, 1);
  return 1;
}

/* The loop resumed the task: the coroutine on top of L (popped), parked
   last, is about to be resumed where it waited. */
void loop_nest_unpark(lua_State *L) {
  csock_loop *lp = running;
  csock_task *t = lp ? lp->current : NULL;
  if (t != NULL && !task_ended(t)) {
    push_nest(L, t);
    lua_pushnil(L);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2));
    lua_pop(L, 2);
  }
  set_parked(lua_tothread(L, -1), 0);
  lua_pop(L, 1);
}

/* Closes the coroutines t waits in (their to-be-closed variables), innermost first. */
static void close_nest(csock_loop *lp, csock_task *t) {
  lua_State *L = lp->L;
  if (task_ended(t)) return;
  int top = lua_gettop(L);
  loop_push_handle(L, t);
  if (lua_getiuservalue(L, -1, UV_NEST) == LUA_TTABLE) {
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TTHREAD; i++) {
      lua_State *co = lua_tothread(L, -1);
      if (close_thread(co, L) != LUA_OK) {
        const char *msg = lua_tostring(co, -1);
        task_report(lp, t, msg ? msg : "error in a __close handler");
      }
      set_parked(co, 0);
      lua_pop(L, 1);
    }
    lua_rawgeti(L, top + 2, 0); /* the coroutine is the uservalue again */
    lua_setiuservalue(L, top + 1, UV_NEST);
  }
  lua_settop(L, top);
}

/* The value on top of L (popped) becomes what join returns for the handle below it, in the
   place of the coroutine: call once the coroutine is safe without the handle (pooled, or done). */
static void keep_result(lua_State *L) {
  lua_setiuservalue(L, -2, UV_RESULT);
  lua_pop(L, 1);
}

/*
** The results are gathered into their table in the task's own coroutine,
** where they already are: the loop's thread L may not have room for
** hundreds of them (return table.unpack(t)).  Without memory for the one
** slot the table needs, the results are dropped rather than overflow.
*/
static void task_done(csock_loop *lp, csock_task *t, int nres) {
  lua_State *L = lp->L, *co = t->co;
  if (nres > 0 && !lua_checkstack(co, 1)) nres = 0;
  if (nres == 0) { /* nothing to keep: the handle's uservalue is not read again */
    lua_settop(co, 0);
    task_end(lp, t, T_DONE);
    t->nresults = 0; /* in the ref's place, which task_end let go of */
    co_put(lp, t);
    return;
  }
  loop_push_handle(L, t); /* held here: task_end drops its anchor */
  lua_createtable(co, nres, 0);
  lua_insert(co, -1 - nres);
  int tbl = lua_gettop(co) - nres;
  for (int i = nres; i >= 1; i--) lua_rawseti(co, tbl, i);
  lua_xmove(co, L, 1);
  lua_settop(co, 0);
  task_end(lp, t, T_DONE);
  t->nresults = nres;
  co_put(lp, t);
  keep_result(L);
}

/* A task raised: report it (the main task's traceback is kept for the
   host instead), keep the error for join, close its variables. */
static void task_failed(csock_loop *lp, csock_task *t) {
  lua_State *L = lp->L, *co = t->co;
  lua_xmove(co, L, 1);
  int err = lua_gettop(L);
  const char *msg;
  if (lua_type(L, err) == LUA_TSTRING || lua_type(L, err) == LUA_TNUMBER)
    msg = luaL_tolstring(L, err, NULL);
  else if (luaL_callmeta(L, err, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
    msg = lua_tostring(L, -1);
  else
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, err));
  luaL_traceback(L, co, msg, 0);
  if (t == lp->main)
    lua_setfield(L, LUA_REGISTRYINDEX, LAST_TRACEBACK);
  else
    task_report(lp, t, lua_tostring(L, -1));
  lua_settop(L, err);
  loop_push_handle(L, t); /* held here: task_end drops its anchor */
  lua_insert(L, err);
  drop_read(t);        /* before its stack goes, and the socket with it */
  close_thread(co, L); /* runs its to-be-closed variables, the handle still holding co */
  task_end(lp, t, T_FAILED);
  keep_result(L);
}

static void loop_task_cancelled(csock_loop *lp, csock_task *t) {
  unlink_also(t); /* before its stack goes, and the socket with it */
  drop_read(t);
  close_nest(lp, t);
  if (close_thread(t->co, lp->L) != LUA_OK) {
    const char *msg = lua_tostring(t->co, -1);
    task_report(lp, t, msg ? msg : "error in a __close handler");
  }
  task_end(lp, t, T_CANCELLED);
}

static int main_failed(const csock_loop *lp) {
  return lp->main != NULL && lp->main->state == T_FAILED;
}

static void task_resume(csock_loop *lp, csock_task *t) {
  if (t->cancel || main_failed(lp)) {
    loop_task_cancelled(lp, t);
    return;
  }
  /* a coroutine not yet resumed holds the function and its arguments; one that yielded is
     resumed with none */
  int nres = 0, nargs = 0;
  if (!t->started) {
    t->started = 1;
    nargs = lua_gettop(t->co) - 1;
  }
  t->state = T_RUNNING;
  lp->current = t;
  lp->thread = t->co;
  lp->passable = 1;
  int status = lua_resume(t->co, lp->L, nargs, &nres);
  lp->current = NULL;
  lp->thread = NULL;
  cork_flush(); /* what the run corked and did not close goes out now */
  if (status == LUA_YIELD) {
    if (t->state == T_RUNNING) { /* a plain coroutine.yield: run again later */
      lua_pop(t->co, nres);
      enqueue(lp, t);
    }
  } else if (status == LUA_OK) {
    task_done(lp, t, nres);
  } else {
    task_failed(lp, t);
  }
}

/* ---------------------------------------------------------------- the loop */

/* Phase 1: resume the tasks that are ready now, in order. */
void loop_run_ready(csock_loop *lp) {
  csock_task *t = lp->ready_head;
  lp->ready_head = lp->ready_tail = NULL;
  while (t) {
    csock_task *next = t->link.next_ready;
    t->link.next_ready = NULL;
    task_resume(lp, t);
    t = next;
  }
}

/* How long phase 2 may wait, in microseconds (-1: until an event). */
static long long poll_timeout(csock_loop *lp) {
  if (lp->ready_head) return 0;
  if (lp->heap_len == 0) return -1;
  double left = lp->heap[0].deadline - csock_now();
  if (left <= 0) return 0;
  return left > 86400 ? 86400000000LL : (long long)ceil(left * 1e6);
}

/* Makes ready the tasks whose deadlines have passed. */
static void expire_timers(csock_loop *lp) {
  if (lp->heap_len == 0) return;
  double now = csock_now();
  while (lp->heap_len && lp->heap[0].deadline <= now) {
    csock_task *t = lp->heap[0].task;
    loop_wake_task(t, t->wait_kind == W_WATCH || t->wait_kind == W_COND ? -ETIMEDOUT : 0);
  }
}

/* Phases 2 and 3; no Lua code runs here. */
static int poll_and_wake(csock_loop *lp, long long timeout) {
  backend_event evs[EVENT_BATCH];
  int n = backend_poll(lp->poller, evs, EVENT_BATCH, timeout);
  if (n < 0) return n;
  expire_timers(lp); /* first: sleepers run ahead of the I/O woken now */
  for (int i = 0; i < n; i++) {
    if (evs[i].ptr == &signal_marker) {
      lp->signal_pending = 1;
      continue;
    }
    if (evs[i].ptr == &timer_marker) continue; /* expire_timers did the work; embed.c re-arms */
    csock_watch *w = (csock_watch *)evs[i].ptr;
    if (evs[i].events & CSOCK_HUP) w->rdhup = 1;
    if (evs[i].events & CSOCK_READ) {
      w->rready = 1;
      wake_queue(w, CSOCK_READ, 0);
    }
    if (evs[i].events & CSOCK_WRITE) {
      w->wready = 1;
      wake_queue(w, CSOCK_WRITE, 0);
    }
  }
  return 0;
}

/* Adds the signal pipe to lp's poller once csock.signal has made it. */
void loop_watch_signals(csock_loop *lp) {
  if (lp->signals_watched || signal_fd() < 0) return;
  if (backend_add(lp->poller, signal_fd(), &signal_marker, CSOCK_READ, 0) == 0)
    lp->signals_watched = 1;
}

/* Spawns a task per signal received: handler(signo). */
static void spawn_signal_tasks(lua_State *L, csock_loop *lp) {
  lp->signal_pending = 0;
  int base = lua_gettop(L);
  int pairs = signal_collect(L);
  for (int i = 0; i < pairs; i++) {
    lua_pushvalue(L, base + 2 * i + 1);
    lua_pushvalue(L, base + 2 * i + 2);
    loop_task_new(L, lp, lua_gettop(L) - 1);
    lua_pop(L, 1);
  }
  lua_settop(L, base);
}

void (*loop_turn_hook)(lua_State *L);

/* One turn: ready tasks, then I/O and timers (waiting up to timeout ms). */
void loop_turn(lua_State *L, csock_loop *lp, long long max_wait) {
  if (loop_turn_hook) loop_turn_hook(L);
  loop_watch_signals(lp); /* csock.signal may have made the pipe since the last turn */
  long long timeout = poll_timeout(lp);
  if (max_wait >= 0 && (timeout < 0 || timeout > max_wait)) timeout = max_wait;
  int r = poll_and_wake(lp, timeout);
  if (r < 0) luaL_error(L, "csock: epoll_wait: %s", strerror(-r));
  if (lp->signal_pending) spawn_signal_tasks(L, lp);
}

static int loop_main(lua_State *L) {
  csock_loop *lp = (csock_loop *)lua_touserdata(L, 1);
  while (lp->alive > 0) {
    loop_run_ready(lp);
    if (lp->alive == 0 || main_failed(lp)) break;
    if (!lp->ready_head && lp->heap_len == 0 && lp->io_waiters == 0 && !signal_active())
      return luaL_error(L,
                        "csock.run: deadlock (every task waits for another task or a condition)");
    loop_turn(L, lp, -1);
  }
  return 0;
}

static int cancel_one(csock_task *t, void *arg) {
  if (t != ((csock_loop *)arg)->main) {
    t->cancel = 1;
    loop_wake_task(t, -ECANCELED);
  }
  return 0;
}

/* Cancels every live task but the main one, if the loop has one: newest first. */
void loop_cancel_all(csock_loop *lp) {
  size_t n = 0;
  csock_task **v = tasks_of(lp, &n);
  if (v == NULL) { /* no memory for the order: the anchors' will do */
    visit_tasks(lp->L, lp, cancel_one, lp);
    return;
  }
  for (size_t i = 0; i < n; i++) cancel_one(v[i], lp);
  free(v);
}

static int first_task(csock_task *t, void *arg) {
  *(csock_task **)arg = t;
  return 1;
}

/* Ends t now, for a loop that will not run again (see loop_end_all). */
static void end_now(csock_loop *lp, csock_task *t, int close) {
  if (close) t->cancel = 1;
  loop_wake_task(t, -ECANCELED); /* out of the sockets' waiter slots first */
  lp->ready_head = lp->ready_tail = NULL;
  if (close)
    loop_task_cancelled(lp, t);
  else
    task_end(lp, t, T_CANCELLED);
}

/*
** Ends every live task of lp, a loop that will not run again, newest
** first: close runs their to-be-closed variables (in lp->L), else they
** just end.  The ready queue is emptied before each task ends: a task
** that ended in it could be collected (a __close handler may run the
** collector) while the queue still linked it.  Only lp's own turns end
** its tasks, so those in the array stay alive until their turn here.
*/
void loop_end_all(csock_loop *lp, int close) {
  size_t n = 0;
  csock_task **v = tasks_of(lp, &n);
  for (size_t i = 0; v != NULL && i < n; i++) end_now(lp, v[i], close);
  free(v);
  csock_task *t; /* whatever is left: all of them when memory ran out */
  while (lp->alive > 0 && visit_tasks(lp->L, lp, first_task, &t)) end_now(lp, t, close);
}

void loop_free(csock_loop *lp) {
  loops_remove(lp);
  if (lp->poller) backend_free(lp->poller);
  if (lp->timer_fd >= 0) close(lp->timer_fd);
  free(lp->heap);
  free(lp);
}

/* Runs the loop to its end under lua_pcall, so that `running` is always reset. */
static int loop_drive(lua_State *L, csock_loop *lp) {
  lua_pushcfunction(L, loop_main);
  lua_pushlightuserdata(L, lp);
  int status = lua_pcall(L, 1, 0, 0);
  while (status == LUA_OK && lp->main->state == T_FAILED && lp->alive > 0) {
    loop_cancel_all(lp);
    lua_pushcfunction(L, loop_main);
    lua_pushlightuserdata(L, lp);
    status = lua_pcall(L, 1, 0, 0);
  }
  return status;
}

/* Under lua_pcall: lp, fn, args... -> the handle of the main task fn(args...). */
static int loop_start(lua_State *L) {
  csock_loop *lp = (csock_loop *)lua_touserdata(L, 1);
  lp->main = loop_task_new(L, lp, 2);
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, LAST_TRACEBACK);
  lua_settop(L, 2);
  return 1;
}

/* csock.run(fn, ...): fn(...) as the first task; returns its results. */
int loop_run(lua_State *L) {
  csock_checktype(L, 1, LUA_TFUNCTION);
  if (running) return luaL_error(L, "csock.run: the loop is already running (nested run)");
  csock_loop *lp = calloc(1, sizeof *lp);
  if (lp == NULL) return luaL_error(L, "not enough memory");
  lp->L = L;
  int e = 0;
  lp->poller = backend_create(&e);
  if (lp->poller == NULL) {
    free(lp);
    return luaL_error(L, "csock.run: epoll_create1: %s", strerror(e));
  }
  lp->timer_fd = -1;
  lp->gen = ++generation;
  lp->seq = SEQ_START;
  loops_add(lp);
  running = lp;
  loop_watch_signals(lp);
  /* the main task is made under lua_pcall too: running must be reset and lp
     freed even when memory runs out there (or fn has too many arguments) */
  lua_pushcfunction(L, loop_start);
  lua_insert(L, 1);
  lua_pushlightuserdata(L, lp);
  lua_insert(L, 2);
  int status = lua_pcall(L, lua_gettop(L) - 1, 1, 0);
  lua_settop(L, 1); /* the main task's handle, or the error: where loop_start was */
  csock_task *main = lp->main;
  if (status == LUA_OK) status = loop_drive(L, lp);
  /* tasks still alive after an internal error are cancelled, not leaked;
     the ready queue will not run again and must not link an ended task */
  if (status != LUA_OK) loop_end_all(lp, 0);
  running = NULL;
  loop_free(lp);
  if (status != LUA_OK) return lua_error(L);
  lua_getiuservalue(L, 1, UV_RESULT);
  if (main->state == T_FAILED) return lua_error(L);
  if (main->state == T_CANCELLED) return luaL_error(L, "csock.run: the main task was cancelled");
  int n = main->nresults;
  if (n == 0) return 0;
  luaL_checkstack(L, n, "too many results");
  for (int i = 1; i <= n; i++) lua_rawgeti(L, 2, i);
  return n;
}

/* csock.spawn(fn, ...) */
int loop_spawn(lua_State *L) {
  csock_checktype(L, 1, LUA_TFUNCTION);
  csock_loop *lp = running;
  if (lp == NULL)
    return luaL_error(L, "csock.spawn: no loop is running (call it inside csock.run)");
  loop_task_new(L, lp, 1); /* leaves the handle alone on the stack */
  return 1;
}

const char *loop_last_traceback(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, LAST_TRACEBACK);
  const char *tb = lua_tostring(L, -1);
  lua_pop(L, 1); /* still anchored in the registry */
  return tb;
}

/* ---------------------------------------------------------------- for embed.c */

/* A new loop, not running, on the thread's list; NULL with *err (an errno) on failure. */
csock_loop *loop_create(lua_State *L, int *err) {
  csock_loop *lp = calloc(1, sizeof *lp);
  if (lp == NULL) {
    *err = ENOMEM;
    return NULL;
  }
  lp->poller = backend_create(err);
  if (lp->poller == NULL) {
    free(lp);
    return NULL;
  }
  lp->timer_fd = -1;
  lp->L = L;
  lp->gen = ++generation;
  lp->seq = SEQ_START;
  loops_add(lp);
  return lp;
}

/* Puts fd, a timerfd the loop then owns, in lp's poller: 0 or -errno. */
int loop_watch_timer(csock_loop *lp, int fd) {
  lp->timer_fd = fd;
  return backend_add(lp->poller, fd, &timer_marker, CSOCK_READ, 0);
}

/* The descriptor a host polls for lp (loop:fd()): readable when a step has work. */
int loop_fd(const csock_loop *lp) { return backend_fd(lp->poller); }

/* Makes lp the thread's running loop (NULL: none). */
void loop_set_running(csock_loop *lp) { running = lp; }

/* Keeps the tasks' metatable (on top of the stack; task.c makes it) where loop_task_new finds it.
 */
void loop_set_task_meta(lua_State *L) { lua_rawsetp(L, LUA_REGISTRYINDEX, &task_meta_key); }

csock_loop *loop_running(void) { return running; }
