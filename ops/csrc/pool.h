/* Fork-join over tasks. Built with -fopenmp, it runs on OpenMP: PyTorch's CPU wheels ship their
 * own libgomp.so.1, and a library asking for that soname gets the copy torch already loaded, so
 * these kernels use torch's worker threads instead of starting their own (own threads would
 * compete with torch's, which spin for a while after each parallel region, and on a machine
 * with few cores lose more to that than they gain). Without OpenMP it falls back to pthreads. */
#ifndef VMAMBA_POOL_H
#define VMAMBA_POOL_H
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif
#ifdef __linux__
#include <sys/mman.h>
#include <unistd.h>
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux >= 5.14; older kernels answer EINVAL: no effect */
#endif
#endif

/* Outputs at least this large are prefaulted (see prefault): glibc serves blocks over 32 MB
 * with fresh pages, which the kernel otherwise faults in one 4 KB trap at a time. */
#define PREFAULT_MIN_BYTES ((size_t)32 << 20)

/* Faults in the pages of [p, p + bytes) for writing with one madvise call, about half the cost
 * of taking a trap per page on the first write; pages already present cost a page-table walk.
 * Contents are unchanged. No-op where unsupported. */
static inline void prefault(void *p, size_t bytes) {
#ifdef __linux__
  const long page = sysconf(_SC_PAGESIZE);
  if (page <= 0 || bytes == 0) return;
  const uintptr_t start = (uintptr_t)p & ~((uintptr_t)page - 1);
  (void)madvise((void *)start, (uintptr_t)p + bytes - start, MADV_POPULATE_WRITE);
#else
  (void)p;
  (void)bytes;
#endif
}

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

/* Subnormal floats (below 1.2e-38 in float32) take a microcode path costing orders of magnitude
 * more than a normal operation. A scan's state and adjoint decay geometrically along long
 * sequences and reach that range (Vim's backward at high resolution spent most of its time
 * there, and handed the subnormals on to the GEMMs of the layers below), so the kernels run
 * with flush-to-zero / denormals-are-zero, as GPU kernels compiled with fast math do; the
 * caller's setting is restored afterwards. */
static inline unsigned int ftz_begin(void) {
#if defined(__x86_64__) || defined(__i386__)
  const unsigned int csr = _mm_getcsr();
  _mm_setcsr(csr | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
  return csr;
#else
  return 0;
#endif
}

static inline void ftz_end(unsigned int csr) {
#if defined(__x86_64__) || defined(__i386__)
  _mm_setcsr(csr);
#else
  (void)csr;
#endif
}

static inline void *pool_worker(void *arg) {
  pool_t *p = (pool_t *)arg;
  void *scratch = malloc(p->scratch_bytes);
  if (scratch == NULL) {
    __atomic_store_n(&p->failed, 1, __ATOMIC_RELAXED);
    return NULL;
  }
  const unsigned int csr = ftz_begin();
  for (;;) {
    int64_t t = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
    if (t >= p->n_tasks) break;
    p->fn(p->ctx, t, scratch);
  }
  ftz_end(csr);
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

/* prefault() of a large buffer in PREFAULT_CHUNK pieces on up to n_threads threads; buffers under
 * PREFAULT_MIN_BYTES are left alone (they are usually reused heap memory). */
#define PREFAULT_CHUNK ((size_t)4 << 20)

typedef struct {
  char *p;
  size_t bytes;
} prefault_args;

static void prefault_task(void *ctx, int64_t t, void *scratch) {
  const prefault_args *a = (const prefault_args *)ctx;
  const size_t off = (size_t)t * PREFAULT_CHUNK;
  (void)scratch;
  prefault(a->p + off, a->bytes - off < PREFAULT_CHUNK ? a->bytes - off : PREFAULT_CHUNK);
}

static inline void prefault_large(void *p, size_t bytes, int n_threads) {
  if (bytes < PREFAULT_MIN_BYTES) return;
  prefault_args a = {(char *)p, bytes};
  (void)run_parallel(prefault_task, &a, (int64_t)((bytes + PREFAULT_CHUNK - 1) / PREFAULT_CHUNK),
                     64, n_threads);
}

#endif
