/* Body of the CPU selective scan, included by scan_cpu.c once per REAL type (float, double).
 * Buffers inside a block are laid out [k][t] with k = c * N + n (channel c of the block, state n)
 * and t the step inside the current chunk of CHUNK steps; dt is kept per channel, [c][t]. */

typedef struct {
  int64_t batch, G, dg, N, L, S;
  int softplus;
  const REAL *u, *delta, *bias, *A, *B, *C, *D, *dy, *dlast;
  REAL *y, *last, *du, *ddelta, *dA, *dBp, *dCp, *dD, *dbias;
  /* low-rank delta (forward only): delta[row][t] = sum_r dt_w[prow][r] dt_low[bg][r][t], with
   * dt_low's group bg starting at bg * lr_stride and its R rows L apart; NULL: delta is given */
  const REAL *dt_low, *dt_w;
  int64_t R, lr_stride;
} SFX(args);

/* For the w channels from row0 and steps [t0, t0 + tl): dtb[c][t] = dt,
 * a[k][t] = exp(dt A), x[k][t] = dt B u. */
static inline void SFX(prepare)(const SFX(args) * p, REAL *restrict dtb, REAL *restrict a,
                                REAL *restrict x, int64_t row0, int64_t prow0, int w, int64_t t0,
                                int tl, int64_t bg) {
  const int64_t N = p->N, L = p->L;
  for (int c = 0; c < w; ++c) {
    const REAL *restrict ur = p->u + (row0 + c) * L + t0;
    const REAL bias = p->bias ? p->bias[prow0 + c] : (REAL)0;
    REAL *restrict dtr = dtb + c * CHUNK;
    if (p->dt_w) { /* delta from its low-rank factors, then as below on dtr itself */
      const REAL *restrict wr = p->dt_w + (prow0 + c) * p->R;
      const REAL *restrict low = p->dt_low + bg * p->lr_stride + t0;
      const int64_t R = p->R;
      int64_t r = 0;
      for (int t = 0; t < tl; ++t) dtr[t] = bias;
      for (; r + 4 <= R; r += 4) { /* four rows per pass over dtr */
        const REAL w0 = wr[r], w1 = wr[r + 1], w2 = wr[r + 2], w3 = wr[r + 3];
        const REAL *restrict l0 = low + r * L, *restrict l1 = l0 + L;
        const REAL *restrict l2 = l1 + L, *restrict l3 = l2 + L;
        for (int t = 0; t < tl; ++t)
          dtr[t] += (w0 * l0[t] + w1 * l1[t]) + (w2 * l2[t] + w3 * l3[t]);
      }
      for (; r < R; ++r) {
        const REAL wv = wr[r];
        const REAL *restrict lr = low + r * L;
        for (int t = 0; t < tl; ++t) dtr[t] += wv * lr[t];
      }
      if (p->softplus) {
        for (int t = 0; t < tl; ++t) dtr[t] = SOFTPLUS(dtr[t]);
      }
    } else {
      const REAL *restrict dr = p->delta + (row0 + c) * L + t0;
      if (p->softplus) {
        for (int t = 0; t < tl; ++t) dtr[t] = SOFTPLUS(dr[t] + bias);
      } else {
        for (int t = 0; t < tl; ++t) dtr[t] = dr[t] + bias;
      }
    }
    for (int64_t n = 0; n < N; ++n) {
      const REAL An = p->A[(prow0 + c) * N + n];
      const REAL *restrict Bn = p->B + (bg * N + n) * L + t0;
      REAL *restrict ak = a + (c * N + n) * CHUNK;
      REAL *restrict xk = x + (c * N + n) * CHUNK;
      for (int t = 0; t < tl; ++t) {
        ak[t] = EXP(dtr[t] * An);
        xk[t] = dtr[t] * Bn[t] * ur[t];
      }
    }
  }
}

/* h[k] = a[k][t] h[k] + x[k][t] for t < tl; x is overwritten with the states. Eight
 * recurrences at a time with their states in registers: the loop is bound by one store per
 * step, not by the latency of a state round-tripping through memory. */
__attribute__((optimize("no-tree-vectorize"))) static void SFX(recur)(const REAL *restrict a,
                                                                      REAL *restrict x,
                                                                      REAL *restrict h, int K,
                                                                      int tl) {
  int k0 = 0;
  for (; k0 + 8 <= K; k0 += 8) {
    const REAL *a0 = a + k0 * CHUNK;
    REAL *x0 = x + k0 * CHUNK;
    REAL h0 = h[k0], h1 = h[k0 + 1], h2 = h[k0 + 2], h3 = h[k0 + 3];
    REAL h4 = h[k0 + 4], h5 = h[k0 + 5], h6 = h[k0 + 6], h7 = h[k0 + 7];
    for (int t = 0; t < tl; ++t) {
#define STEP(j, hj)                                                    \
  hj = a0[(j) * CHUNK + t] * hj + x0[(j) * CHUNK + t];                 \
  x0[(j) * CHUNK + t] = hj;
      STEP(0, h0) STEP(1, h1) STEP(2, h2) STEP(3, h3)
      STEP(4, h4) STEP(5, h5) STEP(6, h6) STEP(7, h7)
#undef STEP
    }
    h[k0] = h0, h[k0 + 1] = h1, h[k0 + 2] = h2, h[k0 + 3] = h3;
    h[k0 + 4] = h4, h[k0 + 5] = h5, h[k0 + 6] = h6, h[k0 + 7] = h7;
  }
  for (int t = 0; t < tl; ++t) {
    for (int k = k0; k < K; ++k) {
      const REAL hk = a[k * CHUNK + t] * h[k] + x[k * CHUNK + t];
      h[k] = hk;
      x[k * CHUNK + t] = hk;
    }
  }
}

/* y[t] = D u[t] + sum_n C[n][t] h[k][t] for the w channels of the block. */
static inline void SFX(output)(const SFX(args) * p, REAL *restrict yout, const REAL *restrict hs,
                               int64_t row0, int64_t prow0, int w, int64_t t0, int tl,
                               int64_t bg) {
  const int64_t N = p->N, L = p->L;
  for (int c = 0; c < w; ++c) {
    REAL *restrict yr = yout + (row0 + c) * L + t0;
    const REAL *restrict ur = p->u + (row0 + c) * L + t0;
    const REAL Dv = p->D ? p->D[prow0 + c] : (REAL)0;
    for (int t = 0; t < tl; ++t) yr[t] = Dv * ur[t];
    for (int64_t n = 0; n < N; ++n) {
      const REAL *restrict Cn = p->C + (bg * N + n) * L + t0;
      const REAL *restrict hn = hs + (c * N + n) * CHUNK;
      for (int t = 0; t < tl; ++t) yr[t] += Cn[t] * hn[t];
    }
  }
}

static void SFX(fwd_task)(void *vctx, int64_t task, void *scratch) {
  const SFX(args) *p = (const SFX(args) *)vctx;
  const int64_t N = p->N, L = p->L, nblk = (p->dg + WIDTH - 1) / WIDTH;
  const int64_t bg = task / nblk, d0 = (task % nblk) * WIDTH;
  const int w = (int)(p->dg - d0 < WIDTH ? p->dg - d0 : WIDTH);
  const int K = (int)(w * N);
  const int64_t row0 = bg * p->dg + d0, prow0 = (bg % p->G) * p->dg + d0;
  REAL *a = (REAL *)scratch, *x = a + WIDTH * N * CHUNK, *dtb = x + WIDTH * N * CHUNK;
  REAL *h = dtb + WIDTH * CHUNK;
  for (int k = 0; k < K; ++k) h[k] = 0;
  for (int64_t t0 = 0; t0 < L; t0 += CHUNK) {
    const int tl = (int)(L - t0 < CHUNK ? L - t0 : CHUNK);
    SFX(prepare)(p, dtb, a, x, row0, prow0, w, t0, tl, bg);
    SFX(recur)(a, x, h, K, tl);
    SFX(output)(p, p->y, x, row0, prow0, w, t0, tl, bg);
  }
  for (int k = 0; k < K; ++k) p->last[row0 * N + k] = h[k];
}

int SFX(vmamba_scan_fwd)(int64_t batch, int64_t G, int64_t dg, int64_t N, int64_t L,
                         int softplus, const REAL *u, const REAL *delta, const REAL *bias,
                         const REAL *A, const REAL *B, const REAL *C, const REAL *D, REAL *y,
                         REAL *last, int n_threads) {
  SFX(args) p = {batch, G,    dg,   N,    L,    1,    softplus, u,    delta, bias, A, B,
                 C,     D,    NULL, NULL, y,    last, NULL,     NULL, NULL,  NULL, NULL, NULL,
                 NULL};
  const int64_t nblk = (dg + WIDTH - 1) / WIDTH;
  const size_t scratch =
      (size_t)(2 * WIDTH * N * CHUNK + WIDTH * CHUNK + WIDTH * N) * sizeof(REAL);
  prefault_large(y, (size_t)(batch * G * dg * L) * sizeof(REAL), n_threads);
  return run_parallel(SFX(fwd_task), &p, batch * G * nblk, scratch,
                      threads_for(batch * G * dg * N * L, n_threads));
}

/* The forward with delta given by its low-rank factors (see SFX(args)): dt_low (batch * G, R, L)
 * with group stride lr_stride, dt_w (G * dg, R). Saves writing and reading a (rows, L) delta. */
int SFX(vmamba_scan_fwd_lowrank)(int64_t batch, int64_t G, int64_t dg, int64_t N, int64_t L,
                                 int64_t R, int64_t lr_stride, int softplus, const REAL *u,
                                 const REAL *dt_low, const REAL *dt_w, const REAL *bias,
                                 const REAL *A, const REAL *B, const REAL *C, const REAL *D,
                                 REAL *y, REAL *last, int n_threads) {
  SFX(args) p = {batch, G,    dg,   N,    L,    1,    softplus, u,    NULL, bias, A, B,
                 C,     D,    NULL, NULL, y,    last, NULL,     NULL, NULL, NULL, NULL, NULL,
                 NULL,  dt_low, dt_w, R,  lr_stride};
  const int64_t nblk = (dg + WIDTH - 1) / WIDTH;
  const size_t scratch =
      (size_t)(2 * WIDTH * N * CHUNK + WIDTH * CHUNK + WIDTH * N) * sizeof(REAL);
  prefault_large(y, (size_t)(batch * G * dg * L) * sizeof(REAL), n_threads);
  return run_parallel(SFX(fwd_task), &p, batch * G * nblk, scratch,
                      threads_for(batch * G * dg * (N + R) * L, n_threads));
}

/* Gradients of one block of w channels (row0 = first row, prow0 = first parameter row).
 * Pass 1 runs the recurrence forward and keeps the state at every chunk start (and y when
 * asked); pass 2 walks the chunks backwards, recomputes their states from the saved start and
 * runs the adjoint g[t] = C[t] dy[t] + a[t+1] g[t+1]. */
static void SFX(bwd_block)(const SFX(args) * p, REAL *scratch, int64_t bg, int64_t d0,
                           REAL *restrict dBp, REAL *restrict dCp) {
  const int64_t N = p->N, L = p->L;
  const int w = (int)(p->dg - d0 < WIDTH ? p->dg - d0 : WIDTH);
  const int K = (int)(w * N);
  const int64_t row0 = bg * p->dg + d0, prow0 = (bg % p->G) * p->dg + d0;
  const int64_t n_chunks = (L + CHUNK - 1) / CHUNK;
  REAL *a = scratch, *x = a + WIDTH * N * CHUNK, *g = x + WIDTH * N * CHUNK;
  REAL *dtb = g + WIDTH * N * CHUNK, *h = dtb + WIDTH * CHUNK, *gn = h + WIDTH * N;
  REAL *hs = gn + WIDTH * N;

  for (int k = 0; k < K; ++k) h[k] = 0;
  for (int64_t ci = 0; ci < n_chunks; ++ci) {
    const int64_t t0 = ci * CHUNK;
    const int tl = (int)(L - t0 < CHUNK ? L - t0 : CHUNK);
    memcpy(hs + ci * K, h, (size_t)K * sizeof(REAL));
    SFX(prepare)(p, dtb, a, x, row0, prow0, w, t0, tl, bg);
    SFX(recur)(a, x, h, K, tl);
    if (p->y) SFX(output)(p, p->y, x, row0, prow0, w, t0, tl, bg);
  }

  for (int k = 0; k < K; ++k) gn[k] = p->dlast ? p->dlast[row0 * N + k] : (REAL)0;
  for (int64_t ci = n_chunks - 1; ci >= 0; --ci) {
    const int64_t t0 = ci * CHUNK;
    const int tl = (int)(L - t0 < CHUNK ? L - t0 : CHUNK);
    SFX(prepare)(p, dtb, a, x, row0, prow0, w, t0, tl, bg);
    memcpy(h, hs + ci * K, (size_t)K * sizeof(REAL));
    SFX(recur)(a, x, h, K, tl);
    for (int c = 0; c < w; ++c) {
      const REAL *restrict dyr = p->dy + (row0 + c) * L + t0;
      for (int64_t n = 0; n < N; ++n) {
        const REAL *restrict Cn = p->C + (bg * N + n) * L + t0;
        REAL *restrict gk = g + (c * N + n) * CHUNK;
        for (int t = 0; t < tl; ++t) gk[t] = Cn[t] * dyr[t];
      }
    }
    for (int t = tl - 1; t >= 0; --t) {
      for (int k = 0; k < K; ++k) {
        const REAL gv = g[k * CHUNK + t] + gn[k];
        g[k * CHUNK + t] = gv;
        gn[k] = a[k * CHUNK + t] * gv;
      }
    }
    for (int c = 0; c < w; ++c) {
      const int64_t off = (row0 + c) * L + t0;
      const REAL *restrict dyr = p->dy + off;
      const REAL *restrict ur = p->u + off;
      const REAL *restrict dtr = dtb + c * CHUNK;
      REAL *restrict dur = p->du + off;
      REAL *restrict ddr = p->ddelta + off; /* holds dL/d dt until the end of this block */
      const REAL Dv = p->D ? p->D[prow0 + c] : (REAL)0;
      REAL dD_acc = 0;
#pragma omp simd reduction(+ : dD_acc)
      for (int t = 0; t < tl; ++t) {
        dur[t] = Dv * dyr[t];
        ddr[t] = 0;
        dD_acc += dyr[t] * ur[t];
      }
      p->dD[row0 + c] += dD_acc;
      for (int64_t n = 0; n < N; ++n) {
        const int64_t k = c * N + n;
        const REAL An = p->A[(prow0 + c) * N + n];
        const REAL *restrict Bn = p->B + (bg * N + n) * L + t0;
        const REAL *restrict gk = g + k * CHUNK;
        const REAL *restrict ak = a + k * CHUNK;
        const REAL *restrict hk = x + k * CHUNK;
        REAL *restrict dBn = dBp + n * L + t0;
        REAL *restrict dCn = dCp + n * L + t0;
        /* step 0 of the chunk reads the state saved before it; the others read hk[t - 1] */
        const REAL ah0 = ak[0] * hs[ci * K + k];
        REAL dA_acc = gk[0] * dtr[0] * ah0;
        dur[0] += gk[0] * dtr[0] * Bn[0];
        ddr[0] += gk[0] * (Bn[0] * ur[0] + An * ah0);
        dBn[0] += gk[0] * dtr[0] * ur[0];
        dCn[0] += dyr[0] * hk[0];
#pragma omp simd reduction(+ : dA_acc)
        for (int t = 1; t < tl; ++t) {
          const REAL gv = gk[t], ah = ak[t] * hk[t - 1];
          dur[t] += gv * dtr[t] * Bn[t];
          ddr[t] += gv * (Bn[t] * ur[t] + An * ah);
          dA_acc += gv * dtr[t] * ah;
          dBn[t] += gv * dtr[t] * ur[t];
          dCn[t] += dyr[t] * hk[t];
        }
        p->dA[row0 * N + k] += dA_acc;
      }
      /* dL/d delta = dL/d dt * softplus'(delta + bias); the bias gradient sums it */
      const REAL *restrict dr = p->delta + off;
      const REAL bias = p->bias ? p->bias[prow0 + c] : (REAL)0;
      if (p->softplus) {
        for (int t = 0; t < tl; ++t) ddr[t] *= SIGMOID(dr[t] + bias);
      }
      REAL db_acc = 0;
#pragma omp simd reduction(+ : db_acc)
      for (int t = 0; t < tl; ++t) db_acc += ddr[t];
      p->dbias[row0 + c] += db_acc;
    }
  }
}

/* Task = (group row bg, slice s): slice s owns a run of channel blocks and its own partial dB /
 * dC buffer, so no two threads write the same memory. */
static void SFX(bwd_task)(void *vctx, int64_t task, void *scratch) {
  const SFX(args) *p = (const SFX(args) *)vctx;
  const int64_t N = p->N, L = p->L, S = p->S, nblk = (p->dg + WIDTH - 1) / WIDTH;
  const int64_t bg = task / S, s = task % S;
  REAL *dBp = p->dBp + (bg * S + s) * N * L, *dCp = p->dCp + (bg * S + s) * N * L;
  for (int64_t blk = s * nblk / S; blk < (s + 1) * nblk / S; ++blk)
    SFX(bwd_block)(p, (REAL *)scratch, bg, blk * WIDTH, dBp, dCp);
}

/* du, ddelta: written. dA (rows, N), dD (rows,), dbias (rows,), dBp / dCp (batch * G, S, N, L):
 * accumulated into (the caller zeroes them). y (rows, L) receives the forward output when not
 * NULL. */
int SFX(vmamba_scan_bwd)(int64_t batch, int64_t G, int64_t dg, int64_t N, int64_t L, int64_t S,
                         int softplus, const REAL *u, const REAL *delta, const REAL *bias,
                         const REAL *A, const REAL *B, const REAL *C, const REAL *D,
                         const REAL *dy, const REAL *dlast, REAL *du, REAL *ddelta, REAL *dA,
                         REAL *dBp, REAL *dCp, REAL *dD, REAL *dbias, REAL *y, int n_threads) {
  SFX(args) p = {batch, G,  dg,     N,  L,   S,   softplus, u,  delta, bias,  A, B,
                 C,     D,  dy,     dlast, y, NULL, du,     ddelta, dA, dBp, dCp, dD, dbias};
  const int64_t n_chunks = (L + CHUNK - 1) / CHUNK;
  const size_t rows_bytes = (size_t)(batch * G * dg * L) * sizeof(REAL);
  prefault_large(du, rows_bytes, n_threads);
  prefault_large(ddelta, rows_bytes, n_threads);
  if (y) prefault_large(y, rows_bytes, n_threads);
  const size_t scratch = (size_t)(3 * WIDTH * N * CHUNK + WIDTH * CHUNK + 2 * WIDTH * N +
                                  WIDTH * N * n_chunks) *
                         sizeof(REAL);
  return run_parallel(SFX(bwd_task), &p, batch * G * S, scratch,
                      threads_for(3 * batch * G * dg * N * L, n_threads));
}
