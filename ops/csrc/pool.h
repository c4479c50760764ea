/* Fork-join over tasks. Built with -fopenmp, it runs on OpenMP: PyTorch's CPU wheels ship their
 * own libgomp.so.1, and a library asking for that soname gets the copy torch already loaded, so
 * these kernels use torch's worker threads instead of starting their own (own threads would
 * compete with torch's, which spin for a while after each parallel region: on 2 cores that made
 * the kernels slower with 2 threads than with 1). Without OpenMP it falls back to pthreads. */
#ifndef VMAMBA_POOL_H
#define VMAMBA_POOL_H
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

/* tasks [0, n_tasks) are handed out by an atomic counter */
typedef void (*task_fn)(void *ctx, int64_t task, void *scratch);

typedef struct {
  task_fn fn;
  void *ctx;
  int64_t n_tasks;
  int64_t next;
  size_t scratch_bytes;
  int failed;
} pool_t;

static inline void *pool_worker(void *arg) {
  pool_t *p = (pool_t *)arg;
  void *scratch = malloc(p->scratch_bytes);
  if (scratch == NULL) {
    __atomic_store_n(&p->failed, 1, __ATOMIC_RELAXED);
    return NULL;
  }
  for (;;) {
    int64_t t = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
    if (t >= p->n_tasks) break;
    p->fn(p->ctx, t, scratch);
  }
  free(scratch);
  return NULL;
}

/* Threads worth starting for `work` element-steps: starting and joining a thread costs tens of
 * microseconds, so small calls run on the caller's thread alone. */
static inline int threads_for(int64_t work, int n_threads) {
  const int64_t useful = work / 32768 > 0 ? work / 32768 : 1;
  return (int)(useful < n_threads ? useful : n_threads);
}

/* Runs fn on every task with up to n_threads threads (the caller is one of them).
 * Returns 0, or -1 when scratch memory could not be allocated. */
static inline int run_parallel(task_fn fn, void *ctx, int64_t n_tasks, size_t scratch_bytes,
                               int n_threads) {
  pool_t p = {fn, ctx, n_tasks, 0, scratch_bytes, 0};
  if (n_threads > n_tasks) n_threads = (int)n_tasks;
  if (n_threads < 1) n_threads = 1;
#ifdef _OPENMP
  if (n_threads > 1) {
#pragma omp parallel num_threads(n_threads)
    pool_worker(&p);
  } else {
    pool_worker(&p);
  }
  return p.failed ? -1 : 0;
#endif
  pthread_t th[256];
  if (n_threads > 256) n_threads = 256;
  int started = 0;
  for (int i = 1; i < n_threads; ++i) {
    if (pthread_create(&th[started], NULL, pool_worker, &p) == 0) ++started;
  }
  pool_worker(&p);
  for (int i = 0; i < started; ++i) pthread_join(th[i], NULL);
  return p.failed ? -1 : 0;
}

#endif
