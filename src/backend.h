/*
** backend.h - the poller under loop.c, kept apart as redis keeps ae_epoll.c
** behind aeApi*: backend_epoll.c is the one there is; a kqueue or io_uring
** poller would be one more file with these functions, chosen in the
** Makefile.  Only loop.c includes this header.  The backend knows
** descriptors and the pointers handed back with their events; what they
** point at (a watcher, or one of loop.c's markers) is loop.c's business.
*/
#ifndef CSOCK_BACKEND_H
#define CSOCK_BACKEND_H

#pragma GCC visibility push(hidden)

typedef struct backend backend; /* each backend file defines its own */

typedef struct backend_event {
  void *ptr;       /* as given to backend_add */
  unsigned events; /* CSOCK_READ | CSOCK_WRITE | CSOCK_HUP */
} backend_event;

/* A new poller; NULL with *err (an errno) on failure. */
backend *backend_create(int *err);
void backend_free(backend *b);
/* A descriptor that polls readable while events wait (csock.loop()'s loop:fd()). */
int backend_fd(const backend *b);
/* After fork(2): the child's own poller, empty, behind the same backend_fd.  0 or -errno. */
int backend_renew(backend *b);
/*
** Watches fd for reading, and for writing too when dirs has CSOCK_WRITE,
** edge-triggered; events come back with ptr.  known: fd is already
** watched, and gets the wider mask.  0 or -errno.
*/
int backend_add(backend *b, int fd, void *ptr, unsigned dirs, int known);
int backend_del(backend *b, int fd);
/* Waits up to timeout_us (-1: forever) for at most max events: how many, or -errno. */
int backend_poll(backend *b, backend_event *out, int max, long long timeout_us);

#pragma GCC visibility pop

#endif
