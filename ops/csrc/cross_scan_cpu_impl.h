/* Body of cross_scan_cpu.c, included once per REAL type (float, double). */

/* V values in one vector (GCC/clang vector extensions: AVX / NEON / SSE as the target has) */
typedef REAL SFX(vec) __attribute__((vector_size(V * sizeof(REAL))));
typedef IREAL SFX(mask) __attribute__((vector_size(V * sizeof(REAL))));

/* (vectors go by pointer: no by-value vector arguments, whose ABI depends on -march) */
static inline void SFX(load)(SFX(vec) * v, const REAL *p, int reversed) {
  memcpy(v, p, sizeof *v);
  if (reversed) *v = SHUFFLE(*v, *v, 7, 6, 5, 4, 3, 2, 1, 0);
}

static inline void SFX(store)(REAL *p, const SFX(vec) * v, int reversed) {
  SFX(vec) t = *v;
  if (reversed) t = SHUFFLE(t, t, 7, 6, 5, 4, 3, 2, 1, 0);
  memcpy(p, &t, sizeof t);
}

/* Transposes the V x V block v[row][col] in place: swaps the off-diagonal 4x4, 2x2, 1x1 blocks */
static inline void SFX(transpose)(SFX(vec) v[V]) {
  SFX(vec) a, b;
  for (int i = 0; i < V; ++i)
    if (!(i & 4)) {
      a = v[i], b = v[i + 4];
      v[i] = SHUFFLE(a, b, 0, 1, 2, 3, 8, 9, 10, 11);
      v[i + 4] = SHUFFLE(a, b, 4, 5, 6, 7, 12, 13, 14, 15);
    }
  for (int i = 0; i < V; ++i)
    if (!(i & 2)) {
      a = v[i], b = v[i + 2];
      v[i] = SHUFFLE(a, b, 0, 1, 8, 9, 4, 5, 12, 13);
      v[i + 2] = SHUFFLE(a, b, 2, 3, 10, 11, 6, 7, 14, 15);
    }
  for (int i = 0; i < V; i += 2) {
    a = v[i], b = v[i + 1];
    v[i] = SHUFFLE(a, b, 0, 8, 2, 10, 4, 12, 6, 14);
    v[i + 1] = SHUFFLE(a, b, 1, 9, 3, 11, 5, 13, 7, 15);
  }
}

/* Writes route `code` of the plane x (H x W) into r (H*W). */
static void SFX(scan_route)(int code, const REAL *restrict x, REAL *restrict r, int64_t H,
                            int64_t W) {
  const int64_t L = H * W;
  if (code == ROW) {
    memcpy(r, x, (size_t)L * sizeof(REAL));
  } else if (code == ROW_REV) {
    for (int64_t i = 0; i < L; ++i) r[L - 1 - i] = x[i];
  } else if (code == ROW_FLIPW) {
    for (int64_t h = 0; h < H; ++h)
      for (int64_t w = 0; w < W; ++w) r[h * W + W - 1 - w] = x[h * W + w];
  } else { /* column routes: pixel (h, w) goes to r[col_start(w) + step * h] */
    const int64_t step = code == COL ? 1 : -1;
    for (int64_t w0 = 0; w0 < W; w0 += V)
      for (int64_t h0 = 0; h0 < H; h0 += V) {
        if (h0 + V <= H && w0 + V <= W) { /* rows h0.. -> route runs w0.. (reversed: step -1) */
          SFX(vec) v[V];
          for (int i = 0; i < V; ++i) SFX(load)(&v[i], x + (h0 + i) * W + w0, 0);
          SFX(transpose)(v);
          for (int j = 0; j < V; ++j)
            SFX(store)(r + col_start(code, w0 + j, H, W) + (step > 0 ? h0 : -h0 - V + 1), &v[j],
                       step < 0);
        } else { /* the ragged edge */
          for (int64_t w = w0; w < min64(w0 + V, W); ++w)
            for (int64_t h = h0; h < min64(h0 + V, H); ++h)
              r[col_start(code, w, H, W) + step * h] = x[h * W + w];
        }
      }
  }
}

/* Adds route r (H*W, ordered by `code`) onto the plane x (H x W). */
static void SFX(merge_route)(int code, const REAL *restrict r, REAL *restrict x, int64_t H,
                             int64_t W) {
  const int64_t L = H * W;
  if (code == ROW) {
    for (int64_t i = 0; i < L; ++i) x[i] += r[i];
  } else if (code == ROW_REV) {
    for (int64_t i = 0; i < L; ++i) x[i] += r[L - 1 - i];
  } else if (code == ROW_FLIPW) {
    for (int64_t h = 0; h < H; ++h)
      for (int64_t w = 0; w < W; ++w) x[h * W + w] += r[h * W + W - 1 - w];
  } else {
    const int64_t step = code == COL ? 1 : -1;
    for (int64_t h0 = 0; h0 < H; h0 += V)
      for (int64_t w0 = 0; w0 < W; w0 += V) {
        if (h0 + V <= H && w0 + V <= W) { /* the transpose of scan_route's block */
          SFX(vec) v[V];
          for (int j = 0; j < V; ++j)
            SFX(load)(&v[j], r + col_start(code, w0 + j, H, W) + (step > 0 ? h0 : -h0 - V + 1),
                      step < 0);
          SFX(transpose)(v);
          for (int i = 0; i < V; ++i) {
            SFX(vec) row;
            SFX(load)(&row, x + (h0 + i) * W + w0, 0);
            row += v[i];
            SFX(store)(x + (h0 + i) * W + w0, &row, 0);
          }
        } else {
          for (int64_t h = h0; h < min64(h0 + V, H); ++h)
            for (int64_t w = w0; w < min64(w0 + V, W); ++w)
              x[h * W + w] += r[col_start(code, w, H, W) + step * h];
        }
      }
  }
}

typedef struct {
  int64_t C, H, W, n_planes, per_task;
  const int *routes;
  const REAL *in;
  REAL *out;
} SFX(cs_args);

/* task t: planes [t * per_task, ...) of (B*C); plane p = b*C + c */
static void SFX(scan_task)(void *ctx, int64_t t, void *scratch) {
  const SFX(cs_args) *a = (const SFX(cs_args) *)ctx;
  const int64_t L = a->H * a->W, p1 = min64((t + 1) * a->per_task, a->n_planes);
  (void)scratch;
  for (int64_t p = t * a->per_task; p < p1; ++p) {
    const int64_t b = p / a->C, c = p % a->C;
    for (int k = 0; k < K_ROUTES; ++k)
      SFX(scan_route)(a->routes[k], a->in + p * L, a->out + ((b * K_ROUTES + k) * a->C + c) * L,
                      a->H, a->W);
  }
}

static void SFX(merge_task)(void *ctx, int64_t t, void *scratch) {
  const SFX(cs_args) *a = (const SFX(cs_args) *)ctx;
  const int64_t L = a->H * a->W, p1 = min64((t + 1) * a->per_task, a->n_planes);
  (void)scratch;
  for (int64_t p = t * a->per_task; p < p1; ++p) {
    const int64_t b = p / a->C, c = p % a->C;
    REAL *x = a->out + p * L;
    memcpy(x, a->in + (b * K_ROUTES * a->C + c) * L, (size_t)L * sizeof(REAL)); /* ROW */
    for (int k = 1; k < K_ROUTES; ++k)
      SFX(merge_route)(a->routes[k], a->in + ((b * K_ROUTES + k) * a->C + c) * L, x, a->H, a->W);
  }
}

static int SFX(cs_run)(task_fn fn, int64_t B, int64_t C, int64_t H, int64_t W, int pattern,
                       const REAL *in, REAL *out, int n_threads) {
  if (pattern < 0 || pattern > 3) return -2;
  const int64_t L = H * W, n_planes = B * C;
  SFX(cs_args) a = {C, H, W, n_planes, 1 + (TASK_ELEMS - 1) / L, ROUTES[pattern], in, out};
  const int64_t n_tasks = (n_planes + a.per_task - 1) / a.per_task;
  const int64_t useful = 1 + n_planes * L * K_ROUTES / THREAD_ELEMS;
  /* scan writes K planes per input plane, merge one */
  const int64_t out_elems = fn == SFX(scan_task) ? n_planes * L * K_ROUTES : n_planes * L;
  prefault_large(out, (size_t)out_elems * sizeof(REAL), n_threads);
  return run_parallel(fn, &a, n_tasks, 64, (int)min64(n_threads, useful));
}

/* x (B, C, H, W) -> out (B, 4, C, H*W). Returns 0, -1 (out of memory) or -2 (bad pattern). */
int SFX(vmamba_cross_scan)(int64_t B, int64_t C, int64_t H, int64_t W, int pattern,
                           const REAL *x, REAL *out, int n_threads) {
  return SFX(cs_run)(SFX(scan_task), B, C, H, W, pattern, x, out, n_threads);
}

/* y (B, 4, C, H, W) -> out (B, C, H, W). Returns 0, -1 (out of memory) or -2 (bad pattern). */
int SFX(vmamba_cross_merge)(int64_t B, int64_t C, int64_t H, int64_t W, int pattern,
                            const REAL *y, REAL *out, int n_threads) {
  return SFX(cs_run)(SFX(merge_task), B, C, H, W, pattern, y, out, n_threads);
}

/* ---- channels-last -> channel-first: src (B, L, C) -> dst (B, C, L) ----
 * torch's copy for this permutation is slow (docs/benchmarks.md); V x V tiles transposed in registers
 * read V pixels' channel runs and write V channels' pixel runs, both in V-element pieces. Task =
 * (image, run of pixels), pixel blocks outer so that the C output rows being filled stay in L1. */
typedef struct {
  int64_t C, L, per_task, tasks_per_image;
  const REAL *src;
  REAL *dst;
} SFX(tr_args);

static void SFX(to_cf_task)(void *ctx, int64_t t, void *scratch) {
  const SFX(tr_args) *a = (const SFX(tr_args) *)ctx;
  const int64_t C = a->C, L = a->L, b = t / a->tasks_per_image;
  const int64_t p0 = (t % a->tasks_per_image) * a->per_task, p1 = min64(p0 + a->per_task, L);
  const REAL *src = a->src + b * L * C;
  REAL *dst = a->dst + b * C * L;
  (void)scratch;
  int64_t p = p0;
  for (; p + V <= p1; p += V) {
    int64_t c = 0;
    for (; c + V <= C; c += V) {
      SFX(vec) v[V];
      for (int i = 0; i < V; ++i) SFX(load)(&v[i], src + (p + i) * C + c, 0);
      SFX(transpose)(v);
      for (int j = 0; j < V; ++j) SFX(store)(dst + (c + j) * L + p, &v[j], 0);
    }
    for (; c < C; ++c)
      for (int i = 0; i < V; ++i) dst[c * L + p + i] = src[(p + i) * C + c];
  }
  for (; p < p1; ++p)
    for (int64_t c = 0; c < C; ++c) dst[c * L + p] = src[p * C + c];
}

/* src (B, L, C) contiguous -> dst (B, C, L) contiguous. Returns 0 or -1 (out of memory). */
int SFX(vmamba_to_channel_first)(int64_t B, int64_t C, int64_t L, const REAL *src, REAL *dst,
                                 int n_threads) {
  const int64_t per_task = ((TASK_ELEMS / (C > 0 ? C : 1)) / V + 1) * V; /* pixels, V-aligned */
  SFX(tr_args) a = {C, L, per_task, (L + per_task - 1) / per_task, src, dst};
  const int64_t useful = 1 + B * C * L / THREAD_ELEMS;
  prefault_large(dst, (size_t)(B * C * L) * sizeof(REAL), n_threads);
  return run_parallel(SFX(to_cf_task), &a, B * a.tasks_per_image, 64,
                      (int)min64(n_threads, useful));
}
