/* Selective scan on the CPU: one pass over the sequence, vectorised math, pthreads.
 *
 * Compiled on first use by vmamba_ops/_c_library.py (plain C, no torch headers) and
 * called through ctypes. Semantics: vmamba_ops/selective_scan/reference.py without the z gate
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
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fastmath.h"
#include "pool.h"

#define CHUNK 64 /* time steps per block: the block's buffers stay in L1/L2 */
#define WIDTH 8  /* channels scanned together: independent recurrences hide FMA latency */

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

/* lets the loader check that it talks to the library it compiled; the number is defined once,
 * in vmamba_ops/_c_library.py, and passed on the compiler's command line */
#ifndef VMAMBA_OPS_ABI_VERSION
#error "VMAMBA_OPS_ABI_VERSION is set by the loader (vmamba_ops/_c_library.py)"
#endif
int vmamba_ops_abi_version(void) { return VMAMBA_OPS_ABI_VERSION; }
