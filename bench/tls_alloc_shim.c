/*
** tls_alloc_shim.c - an LD_PRELOAD library for bench/tls_alloc.sh: it hands
** OpenSSL allocation functions (CRYPTO_set_mem_functions, before OpenSSL's
** first allocation) that count the live blocks and bytes of each call site
** (file:line, which OpenSSL passes), and writes them with glibc's mallinfo2
** to "$TLS_ALLOC_DUMP.<pid>.<k>" each time the file $TLS_ALLOC_DUMP is
** touched.  A thread polls the file: a signal handler could not take the
** allocator's locks.  Forked children (nginx's worker) poll too.
*/
#include <malloc.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NSITES 4096 /* OpenSSL 3.0 has fewer allocation sites than this */

typedef struct site {
  const char *file;
  int line;
  long blocks, bytes;
} site;

typedef struct head { /* before each block: what free must take off */
  size_t size;
  size_t site;
} head;

static site sites[NSITES];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char *dump_path; /* copied at load: nginx's worker clears its environment */

/* Open addressing on the (file, line) pair; the caller holds the lock. */
static size_t site_index(const char *file, int line) {
  size_t h = ((uintptr_t)file * 31u + (size_t)line) % NSITES;
  while (sites[h].file != NULL && (sites[h].file != file || sites[h].line != line))
    h = (h + 1) % NSITES;
  sites[h].file = file;
  sites[h].line = line;
  return h;
}

static void count(size_t s, long blocks, long bytes) {
  sites[s].blocks += blocks;
  sites[s].bytes += bytes;
}

static void *shim_malloc(size_t n, const char *file, int line) {
  head *h = (head *)malloc(sizeof *h + n);
  if (h == NULL) return NULL;
  pthread_mutex_lock(&lock);
  h->size = n;
  h->site = site_index(file != NULL ? file : "?", line);
  count(h->site, 1, (long)n);
  pthread_mutex_unlock(&lock);
  return h + 1;
}

static void shim_free(void *p, const char *file, int line) {
  (void)file, (void)line;
  if (p == NULL) return;
  head *h = (head *)p - 1;
  pthread_mutex_lock(&lock);
  count(h->site, -1, -(long)h->size);
  pthread_mutex_unlock(&lock);
  free(h);
}

static void *shim_realloc(void *p, size_t n, const char *file, int line) {
  if (p == NULL) return shim_malloc(n, file, line);
  head *old = (head *)p - 1;
  size_t size = old->size, s = old->site;
  head *h = (head *)realloc(old, sizeof *h + n);
  if (h == NULL) return NULL;
  pthread_mutex_lock(&lock);
  count(s, -1, -(long)size);
  h->size = n;
  h->site = site_index(file != NULL ? file : "?", line);
  count(h->site, 1, (long)n);
  pthread_mutex_unlock(&lock);
  return h + 1;
}

/* "heap <in use> <mmapped>" then one "<bytes> <blocks> <file:line>" a live site. */
static void dump(const char *path) {
  static site copy[NSITES];
  pthread_mutex_lock(&lock);
  memcpy(copy, sites, sizeof sites);
  pthread_mutex_unlock(&lock);
  FILE *f = fopen(path, "w");
  if (f == NULL) return;
  struct mallinfo2 mi = mallinfo2();
  fprintf(f, "heap %zu %zu\n", mi.uordblks, mi.hblkhd);
  for (size_t i = 0; i < NSITES; i++)
    if (copy[i].file != NULL && (copy[i].blocks != 0 || copy[i].bytes != 0))
      fprintf(f, "%ld %ld %s:%d\n", copy[i].bytes, copy[i].blocks, copy[i].file, copy[i].line);
  fclose(f);
}

static long mtime_ns(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return 0;
  return (long)st.st_mtim.tv_sec * 1000000000L + st.st_mtim.tv_nsec;
}

static void *poll_dump(void *arg) {
  (void)arg;
  char out[4096];
  long seen = mtime_ns(dump_path);
  for (int k = 0;; usleep(100000)) {
    long now = mtime_ns(dump_path);
    if (now == seen) continue;
    seen = now;
    snprintf(out, sizeof out, "%s.%d.%d", dump_path, (int)getpid(), k++);
    dump(out);
  }
  return NULL;
}

static void start_polling(void) {
  pthread_t t;
  if (dump_path != NULL && pthread_create(&t, NULL, poll_dump, NULL) == 0) pthread_detach(t);
}

__attribute__((constructor)) static void shim_init(void) {
  if (!CRYPTO_set_mem_functions(shim_malloc, shim_realloc, shim_free))
    fputs("tls_alloc_shim: OpenSSL allocated before the shim loaded\n", stderr);
  const char *p = getenv("TLS_ALLOC_DUMP");
  dump_path = p != NULL ? strdup(p) : NULL;
  pthread_atfork(NULL, NULL, start_polling);
  start_polling();
}
