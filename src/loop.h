/*
** loop.h - the scheduler's records: tasks and loops, shared by loop.c (the
** scheduler), task.c (task handles and the dump) and embed.c (csock.loop()),
** which extend it.
** Nothing else includes this file; the rest of csock sees csock.h only.
*/
#ifndef CSOCK_LOOP_H
#define CSOCK_LOOP_H

#include <errno.h>
#include <stdint.h>

#include "csock.h"

#pragma GCC visibility push(hidden)

typedef enum {
  T_READY,   /* in the ready queue */
  T_RUNNING, /* being resumed now */
  T_WAITING, /* suspended on I/O, a timer or a join */
  T_DONE,
  T_FAILED,
  T_CANCELLED
} task_state;

/*
** The one uservalue of a task handle (every uservalue costs every handle
** 16 bytes, and so every idle connection a server holds): the task's
** coroutine while the task lives -- or, while it waits in coroutines it
** resumed, their list, innermost first, with the coroutine at index 0 (see
** "Nested coroutines" in loop.c) -- and once it has ended what join
** returns (a table of the results, or the error), in the coroutine's place:
** the coroutine is then back in the pool or garbage.  The name, which few
** tasks have, is kept beside the handle in an ephemeron table of the state
** keyed by it (loop_task_extra / loop_task_setextra, slot EXTRA_NAME).
*/
enum { UV_THREAD = 1, UV_NEST = 1, UV_RESULT = 1, UV_COUNT = 1 };
enum { EXTRA_NAME = 0, EXTRA_COUNT = 1 };

typedef struct csock_task {
  lua_State *co;
  struct csock_loop *loop;
  /* the small fields share two words: every idle connection holds a task */
  union {
    int ref;      /* while the task lives: where its handle is anchored (anchor_put) */
    int nresults; /* once it is done (T_DONE): how many results the UV_RESULT table holds */
  };
  unsigned heap_pos;             /* 1-based position in the timer heap; 0: none */
  uint32_t seq;                  /* breaks ties between equal deadlines (heap_less) */
  unsigned char wake;            /* negated, what the continuation finds: 0, ETIMEDOUT, EBADF.. */
  unsigned char state;           /* a task_state */
  unsigned char wait_kind;       /* what `on` and `link` hold: W_NONE, W_WATCH, W_JOIN or W_COND */
  unsigned char cancel : 1;      /* cancel() was called; ends at the next wait point */
  unsigned char seen : 1;        /* coroutine.running() handed its coroutine out: never pooled */
  unsigned char wait_dir : 2;    /* CSOCK_READ or CSOCK_WRITE, with W_WATCH */
  unsigned char wait_shared : 1; /* W_WATCH: other tasks may queue behind it (loop_wait_shared) */
  unsigned char started : 1;     /* resumed once: its arguments are no longer on its stack */
  lua_Integer id;
  csock_watch *also_watch;    /* a watcher whose forgetting ends the wait too (loop_wait_also) */
  csock_socket *read_sock;    /* a socket whose read() this task has under way (rbusy) */
  struct csock_task *joiners; /* tasks that wait for this one */
  /* A task waits on one thing at a time (and maybe a timer besides), so the
     links of the three kinds of wait share their memory: wait_kind tells.  A
     task in the ready queue waits on nothing (W_NONE), so its queue link is
     one of them too. */
  union {
    csock_watch *watch;       /* W_WATCH: the descriptor waited on */
    struct csock_task *task;  /* W_JOIN: the task waited for */
    csock_waitlist *waitlist; /* W_COND: the condition waited on (cond.c) */
    double deadline; /* W_NONE, woken: the deadline of the wait that ended (loop_op_deadline) */
  } on;
  union {
    struct csock_task *next_joiner;  /* W_JOIN: the next of on.task's joiners */
    struct csock_task *next_watcher; /* W_WATCH: the next task queued on the same direction */
    struct {
      struct csock_task *prev, *next;
    } waiters;                     /* W_COND: its other waiters, oldest first */
    struct csock_task *next_ready; /* T_READY: the next task in the ready queue */
  } link;
} csock_task;

/* Each idle connection holds a task handle: a userdata block of Lua's header
   (56 bytes with one uservalue) and this, which the host allocator (alloc.c)
   rounds up to a multiple of 16. */
_Static_assert(sizeof(csock_task) <= 88, "a task handle fits in a 144-byte block");

/* wake holds the errno values that loop_wake_task is given negated */
_Static_assert(ETIMEDOUT < 256 && EBADF < 256 && ECANCELED < 256, "wake fits in a byte");

enum { W_NONE, W_WATCH, W_JOIN, W_COND };

/* Whether t has ended (done, failed or cancelled): its ref is gone then. */
static inline int task_ended(const csock_task *t) { return t->state >= T_DONE; }

/* What t waits on, by kind; NULL when it waits on something else. */
static inline csock_watch *wait_watch(const csock_task *t) {
  return t->wait_kind == W_WATCH ? t->on.watch : NULL;
}

static inline struct csock_task *joining(const csock_task *t) {
  return t->wait_kind == W_JOIN ? t->on.task : NULL;
}

static inline csock_waitlist *waitlist(const csock_task *t) {
  return t->wait_kind == W_COND ? t->on.waitlist : NULL;
}

/* A timer: a task and its deadline (csock_now's clock), kept in the loop's heap. */
typedef struct heap_entry {
  double deadline;
  csock_task *task;
} heap_entry;

typedef struct csock_loop {
  lua_State *L;           /* the thread that called csock.run */
  struct backend *poller; /* backend.h: loop.c's alone */
  unsigned gen;
  csock_task *ready_head, *ready_tail;
  heap_entry *heap; /* a min-heap of timers by deadline, then seq (loop.c) */
  size_t heap_len, heap_cap;
  size_t alive; /* live tasks: those on the anchors (loop.c) whose loop this is */
  size_t io_waiters;
  csock_task *current;
  lua_State *thread; /* where current runs now: its coroutine, or one it resumed */
  int passable;      /* a wait in thread can yield through to the task */
  csock_task *main;
  uint32_t seq; /* live timers span far fewer than 2^31 insertions: see heap_less */
  lua_Integer next_id;
  int signals_watched; /* the signal pipe is in this loop's epoll set */
  int closing;         /* loop:close() was called from one of its own tasks */
  int signal_pending;  /* the signal pipe became readable */
  int timer_fd;        /* csock.loop(): a timerfd, readable when a step is due */
  struct csock_loop *prev_loop, *next_loop; /* the thread's live loops */
  lua_State *pool;    /* the state's coroutines to reuse (co_take), once looked up */
  lua_State *anchors; /* the state's anchor for live tasks' handles (anchor_put), once looked up */
} csock_loop;

/* The deadline of t's timer (t->heap_pos != 0). */
static inline double task_deadline(const csock_task *t) {
  return t->loop->heap[t->heap_pos - 1].deadline;
}

/* loop.c, for task.c */
csock_task *loop_current_task(lua_State *L);
csock_task *loop_yieldable_task(lua_State *L);
void loop_wake_task(csock_task *t, int reason);
int loop_yield_ready(lua_State *L, csock_task *t, lua_KContext ctx, lua_KFunction k);
void loop_push_handle(lua_State *L, csock_task *t);
void loop_push_tasks(lua_State *L, csock_loop *lp);
csock_loop *loop_running(void);

void loop_set_task_meta(lua_State *L);
int loop_task_extra(lua_State *L, int idx, int slot);
void loop_task_setextra(lua_State *L, int idx, int slot);

/* loop.c, for embed.c */
csock_loop *loop_create(lua_State *L, int *err);
int loop_watch_timer(csock_loop *lp, int fd);
int loop_fd(const csock_loop *lp);
void loop_set_running(csock_loop *lp);
void loop_free(csock_loop *lp);
void loop_watch_signals(csock_loop *lp);
csock_task *loop_task_new(lua_State *L, csock_loop *lp, int fidx);
void loop_run_ready(csock_loop *lp);
void loop_turn(lua_State *L, csock_loop *lp, long long max_wait);
void loop_cancel_all(csock_loop *lp);
void loop_end_all(csock_loop *lp, int close);

#pragma GCC visibility pop

#endif
