/*
** workers.c - `csock -w N` and csock.workers(n): a master process that
** forks N workers running the same script, restarts a worker that dies,
** and forwards SIGINT/SIGTERM/SIGHUP to them.  Workers share listening
** ports because every inet socket a worker binds gets SO_REUSEPORT
** (socket.c asks workers_current_id()), so the kernel spreads connections.
*/
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "csock.h"

#define WORKER_ENV "CSOCK_WORKER"
#define RESTART_BURST 10 /* restarts allowed within one second */

static volatile sig_atomic_t stop_signal;
static int worker_id = -1; /* -1: not known yet (read from the environment) */

static void on_stop(int sig) { stop_signal = sig; }

/* This process's worker number (1..N), or 0 outside worker mode. */
int workers_current_id(void) {
  if (worker_id < 0) {
    const char *e = getenv(WORKER_ENV);
    worker_id = e ? (int)strtol(e, NULL, 10) : 0;
  }
  return worker_id;
}

static void handle_saving(int sig, void (*fn)(int), struct sigaction *old) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = fn;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, old); /* no SA_RESTART: waitpid must see EINTR */
}

static void handle(int sig, void (*fn)(int)) { handle_saving(sig, fn, NULL); }

static unsigned forks; /* fork()s of this process and its ancestors */

/* Sockets made before the last fork share their open files with another process. */
unsigned workers_forks(void) { return forks; }

/* Forks worker i: returns its pid in the master, 0 in the worker. */
static pid_t spawn_worker(int i) {
  pid_t pid = fork();
  if (pid >= 0) forks++;
  if (pid != 0) return pid;
  handle(SIGINT, SIG_DFL);
  handle(SIGTERM, SIG_DFL);
  handle(SIGHUP, SIG_DFL);
  prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the master */
  signal_after_fork();              /* a signal pipe of its own, */
  loop_after_fork();                /* and a poller */
  char num[16];
  snprintf(num, sizeof num, "%d", i);
  setenv(WORKER_ENV, num, 1);
  worker_id = i;
  return 0;
}

static void forward(pid_t *pids, int n, int sig) {
  for (int i = 0; i < n; i++)
    if (pids[i] > 0) kill(pids[i], sig);
}

/*
** Runs the master: returns its exit status (>= 0) when every worker has
** ended, or -1 in a freshly forked worker, which goes on with the script.
** Its worker number is then workers_current_id().
*/
int workers_supervise(int n) {
  pid_t *pids = calloc((size_t)n, sizeof *pids);
  if (pids == NULL) return 1;
  /* the master's own handlers come back when it stops supervising (a script
     that goes on after csock.workers returned must still die of SIGTERM) */
  static const int stops[] = {SIGINT, SIGTERM, SIGHUP};
  struct sigaction before[3];
  for (int k = 0; k < 3; k++) handle_saving(stops[k], on_stop, &before[k]);
  for (int i = 0; i < n; i++) {
    pids[i] = spawn_worker(i + 1);
    if (pids[i] == 0) {
      free(pids);
      return -1;
    }
  }
  int status = 0, forwarded = 0, restarts = 0;
  time_t window = time(NULL);
  for (;;) {
    if (stop_signal && !forwarded) {
      forward(pids, n, stop_signal);
      forwarded = 1;
    }
    int st;
    pid_t pid = waitpid(-1, &st, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break; /* ECHILD: every worker has ended */
    }
    int i = 0;
    while (i < n && pids[i] != pid) i++;
    if (i == n) continue;
    pids[i] = 0;
    int failed = WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0);
    if (!failed || stop_signal) continue;
    if (time(NULL) != window) {
      window = time(NULL);
      restarts = 0;
    }
    if (++restarts > RESTART_BURST) {
      fprintf(stderr, "csock: worker %d keeps failing; not restarting it\n", i + 1);
      status = 1;
      continue;
    }
    fprintf(stderr, "csock: worker %d (pid %d) died; restarting it\n", i + 1, (int)pid);
    pids[i] = spawn_worker(i + 1);
    if (pids[i] == 0) {
      free(pids);
      return -1;
    }
  }
  free(pids);
  for (int k = 0; k < 3; k++) sigaction(stops[k], &before[k], NULL);
  stop_signal = 0;
  return status;
}

/* csock.workers(n): the worker number in each worker; nil, status in the master. */
int workers_lua(lua_State *L) {
  lua_Integer n = csock_checkinteger(L, 1);
  luaL_argcheck(L, n >= 1 && n <= 1024, 1, "worker count out of range");
  fflush(NULL);
  int r = workers_supervise((int)n);
  if (r < 0) {
    lua_pushinteger(L, workers_current_id());
    return 1;
  }
  lua_pushnil(L);
  lua_pushinteger(L, r);
  return 2;
}

/* csock.worker(): this process's worker number under -w / csock.workers, or nil. */
int workers_id_lua(lua_State *L) {
  int id = workers_current_id();
  if (id > 0)
    lua_pushinteger(L, id);
  else
    lua_pushnil(L);
  return 1;
}
