/* Cross-scan / cross-merge on the CPU, channel-first layout: one read of the input, one write
 * of the output, pthreads over (batch, channel) planes.
 *
 * Compiled on first use by vmamba_ops/_c_library.py (plain C) and called through ctypes.
 * Semantics: vmamba_ops/cross_scan/routes.py. Layouts (all contiguous):
 *   cross_scan:  x (B, C, H, W) -> out (B, K, C, H*W)
 *   cross_merge: y (B, K, C, H, W) -> out (B, C, H, W), out = sum of the K routes on the grid
 *   to_channel_first: (B, H*W, C) -> (B, C, H*W) (a channels-last map made channel-first)
 * with K = 4 and pattern 0..3 = cross, unidi, bidi, cascade (the order of routes.PATTERNS).
 * The body is written once in cross_scan_cpu_impl.h and instantiated for float and double.
 */
#include <stdint.h>
#include <string.h>

#include "pool.h"

#define K_ROUTES 4
#define V 8                /* column routes move V x V blocks, transposed in registers */
#define TASK_ELEMS 16384   /* plane elements per task (small planes are grouped) */
#define THREAD_ELEMS 65536 /* output elements per thread below which fewer threads are used */

/* How a route orders the pixels (h, w) of an H x W plane (the orders and ROUTES below mirror
 * vmamba_ops/cross_scan/routes.py, the one definition; tests/test_ops/test_cross_scan_c_kernel.py
 * checks every route of this kernel against it): position l of the route reads pixel
 *   ROW: l = h*W + w      ROW_REV: l = L-1 - (h*W + w)      ROW_FLIPW: l = h*W + W-1-w
 *   COL: l = w*H + h      COL_REV: l = L-1 - (w*H + h)      COL_FLIPH: l = w*H + H-1-h */
enum { ROW, ROW_REV, ROW_FLIPW, COL, COL_REV, COL_FLIPH };

static const int ROUTES[4][K_ROUTES] = {
    {ROW, COL, ROW_REV, COL_REV},     /* cross */
    {ROW, ROW, ROW, ROW},             /* unidi */
    {ROW, ROW, ROW_REV, ROW_REV},     /* bidi */
    {ROW, ROW_FLIPW, COL, COL_FLIPH}, /* cascade */
};  /* route 0 is row-major in every pattern: cross_merge starts from a copy of it */

/* column routes: pixel (h, w) is at position col_start(w) + step * h, step = COL ? 1 : -1 */
static inline int64_t col_start(int code, int64_t w, int64_t H, int64_t W) {
  if (code == COL) return w * H;
  if (code == COL_REV) return H * W - 1 - w * H;
  return w * H + H - 1; /* COL_FLIPH */
}

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* SHUFFLE(a, b, i0..i7): element j of the result is element i_j of the 16 in (a, b); V = 8 */
#if defined(__clang__)
#define SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define SHUFFLE(a, b, ...) __builtin_shuffle(a, b, (SFX(mask)){__VA_ARGS__})
#endif

#define REAL float
#define IREAL int32_t /* the integer of REAL's size: shuffle masks */
#define SFX(name) name##_f32
#include "cross_scan_cpu_impl.h"
#undef REAL
#undef IREAL
#undef SFX

#define REAL double
#define IREAL int64_t
#define SFX(name) name##_f64
#include "cross_scan_cpu_impl.h"
#undef REAL
#undef IREAL
#undef SFX
