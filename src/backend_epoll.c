/*
** backend_epoll.c - the poller behind the loop: backend.h's functions on
** epoll(7).
** Every descriptor is registered once, edge-triggered (for writing too once
** a write has had to wait): a task only waits after its call has returned
** EAGAIN or a short count, so a new edge is guaranteed to come, and no
** epoll_ctl is needed per wait.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "csock.h"
#include "backend.h"

#define BACKEND_BATCH 256

struct backend {
  int epfd;
};

backend *backend_create(int *err) {
  backend *b = malloc(sizeof *b);
  if (b == NULL) {
    *err = ENOMEM;
    return NULL;
  }
  b->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (b->epfd < 0) {
    *err = errno;
    free(b);
    return NULL;
  }
  return b;
}

void backend_free(backend *b) {
  close(b->epfd);
  free(b);
}

int backend_fd(const backend *b) { return b->epfd; }

/*
** An epoll instance survives fork shared, so parent and child would take
** each other's events.  The child gets an instance of its own under the
** same descriptor number, which a host embedding the loop may poll.
*/
int backend_renew(backend *b) {
  int fresh = epoll_create1(EPOLL_CLOEXEC);
  if (fresh < 0) return -errno;
  int r = dup3(fresh, b->epfd, O_CLOEXEC) < 0 ? -errno : 0;
  close(fresh);
  return r;
}

/*
** Registers fd for reading, and for writing too when dirs has CSOCK_WRITE;
** a descriptor already known gets the wider mask.  Write interest is only
** asked for once a write had to wait: most sockets never fill their send
** buffer, and an EPOLLOUT edge nobody waits for is a wasted wake-up.
*/
int backend_add(backend *b, int fd, void *ptr, unsigned dirs, int known) {
  struct epoll_event ev;
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET | ((dirs & CSOCK_WRITE) ? EPOLLOUT : 0);
  ev.data.ptr = ptr;
  if (epoll_ctl(b->epfd, known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) == 0) return 0;
  if (errno == EEXIST && epoll_ctl(b->epfd, EPOLL_CTL_MOD, fd, &ev) == 0) return 0;
  return -errno;
}

int backend_del(backend *b, int fd) {
  struct epoll_event ev = {0}; /* non-NULL for kernels before 2.6.9 */
  return epoll_ctl(b->epfd, EPOLL_CTL_DEL, fd, &ev) == 0 ? 0 : -errno;
}

/*
** Waits up to timeout_us microseconds (-1: forever) and fills out[] with
** at most max events.  Errors and hang-ups count as both readable and
** writable, so the waiters wake and meet the error in their own call (as
** redis does).  epoll_pwait2 (Linux 5.11) keeps timers to the microsecond;
** epoll_wait's milliseconds would make every sleep up to 1 ms late.
*/
static int wait_events(int epfd, struct epoll_event *evs, int max, long long timeout_us) {
  static int no_pwait2;
  if (!no_pwait2 && timeout_us > 0) {
    struct timespec ts;
    ts.tv_sec = (time_t)(timeout_us / 1000000);
    ts.tv_nsec = (long)(timeout_us % 1000000) * 1000;
    int n = epoll_pwait2(epfd, evs, max, &ts, NULL);
    if (n >= 0 || errno != ENOSYS) return n;
    no_pwait2 = 1;
  }
  int ms = timeout_us < 0 ? -1 : (int)((timeout_us + 999) / 1000);
  return epoll_wait(epfd, evs, max, ms);
}

int backend_poll(backend *b, backend_event *out, int max, long long timeout_us) {
  struct epoll_event evs[BACKEND_BATCH];
  if (max > BACKEND_BATCH) max = BACKEND_BATCH;
  int n = wait_events(b->epfd, evs, max, timeout_us);
  if (n < 0) return errno == EINTR ? 0 : -errno;
  for (int i = 0; i < n; i++) {
    unsigned e = evs[i].events, mask = 0;
    if (e & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) mask |= CSOCK_READ;
    if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) mask |= CSOCK_WRITE;
    if (e & (EPOLLRDHUP | EPOLLERR | EPOLLHUP)) mask |= CSOCK_HUP;
    out[i].ptr = evs[i].data.ptr;
    out[i].events = mask;
  }
  return n;
}
