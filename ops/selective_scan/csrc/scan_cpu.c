/* Selective scan on the CPU: one pass over the sequence, vectorised math, pthreads.
 *
 * Compiled on first use by vmamba_ops/selective_scan/native.py (plain C, no torch headers) and
 * called through ctypes. Semantics: vmamba_ops/selective_scan/naive.py without the z gate
 * (the Python wrapper applies it):
 *
 *   dt[t]   = softplus(delta[t] + bias)          (bias and softplus optional)
 *   h[n, t] = exp(dt[t] * A[n]) * h[n, t-1] + dt[t] * B[n, t] * u[t]
 *   y[t]    = sum_n C[n, t] * h[n, t] + D * u[t]
 *
 * Layouts (all contiguous): u, delta, y, dy, du, ddelta: (batch * G * dg, L) with
 * row = (b * G + g) * dg + d; A: (G * dg, N); D, bias: (G * dg,); B, C: (batch * G, N, L);
 * last: (rows, N).
 * The body is written once in scan_cpu_impl.h and instantiated for float and double.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 64 /* time steps per block: the block's buffers stay in L1/L2 */
#define WIDTH 8  /* channels scanned together: independent recurrences hide FMA latency */

/* exp(x) in float with only arithmetic and integer ops, so the compiler vectorises the loops
 * that call it. exp(x) = 2^k exp(r), k = round(x / ln 2), |r| <= ln(2) / 2, degree-6 Taylor
 * polynomial (relative error < 2e-7). Below -87.3 the result is 0, above 88.7 it is inf;
 * NaN stays NaN (comparisons with NaN are false, the polynomial propagates it). */
static inline float fast_expf(float x) {
  union {
    float f;
    int32_t i;
  } v, s;
  const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
  float xc = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x);
  v.f = xc * 1.44269504088896341f + shifter;
  float k = v.f - shifter;
  float r = xc - k * 0.693145751953125f - k * 1.428606765330187e-06f;
  float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 +
                                                                                r * (1.0f / 720))))));
  s.i = (v.i - 0x4B400000 + 127) << 23;
  float out = p * s.f;
  out = x < -87.3f ? 0.0f : out;
  out = x > 88.72f ? INFINITY : out;
  return out;
}

/* softplus(x) = max(x, 0) + log1p(exp(-|x|)); log1p(e) for e in (0, 1] from its series in
 * s = e / (2 + e) <= 1/3: log1p(e) = 2 (s + s^3/3 + s^5/5 + ...), 7 terms (error < 1e-8),
 * with no cancellation for tiny e. Vectorisable like fast_expf. */
static inline float softplus_f32(float x) {
  const float e = fast_expf(-fabsf(x));
  const float s = e / (2.0f + e), s2 = s * s;
  const float p =
      1.0f + s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9 + s2 * (1.0f / 11 +
                                                                                   s2 / 13)))));
  return (x > 0.0f ? x : 0.0f) + 2.0f * s * p;
}

static inline float sigmoid_f32(float x) { return 1.0f / (1.0f + fast_expf(-x)); }

static inline double exp_f64(double x) { return exp(x); }
static inline double softplus_f64(double x) { return (x > 0 ? x : 0) + log1p(exp(-fabs(x))); }
static inline double sigmoid_f64(double x) { return 1.0 / (1.0 + exp(-x)); }

/* --- a minimal fork-join pool: tasks [0, n_tasks) handed out by an atomic counter ---------- */
typedef void (*task_fn)(void *ctx, int64_t task, void *scratch);

typedef struct {
  task_fn fn;
  void *ctx;
  int64_t n_tasks;
  int64_t next;
  size_t scratch_bytes;
  int failed;
} pool_t;

static void *pool_worker(void *arg) {
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

/* Runs fn on every task with up to n_threads threads (the caller is one of them).
 * Returns 0, or -1 when scratch memory could not be allocated. */
static int run_parallel(task_fn fn, void *ctx, int64_t n_tasks, size_t scratch_bytes,
                        int n_threads) {
  pool_t p = {fn, ctx, n_tasks, 0, scratch_bytes, 0};
  if (n_threads > n_tasks) n_threads = (int)n_tasks;
  if (n_threads < 1) n_threads = 1;
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

#define REAL float
#define EXP fast_expf
#define SOFTPLUS softplus_f32
#define SIGMOID sigmoid_f32
#define SFX(name) name##_f32
#include "scan_cpu_impl.h"
#undef REAL
#undef EXP
#undef SOFTPLUS
#undef SIGMOID
#undef SFX

#define REAL double
#define EXP exp_f64
#define SOFTPLUS softplus_f64
#define SIGMOID sigmoid_f64
#define SFX(name) name##_f64
#include "scan_cpu_impl.h"
#undef REAL
#undef EXP
#undef SOFTPLUS
#undef SIGMOID
#undef SFX

/* lets the loader check that it talks to the library it compiled */
int vmamba_scan_abi_version(void) { return 1; }
