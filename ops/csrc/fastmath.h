/* Elementwise math written with arithmetic and integer ops only, so that loops calling it are
 * vectorised by the compiler (libm's expf / log1pf are not, without -ffast-math). */
#ifndef VMAMBA_FASTMATH_H
#define VMAMBA_FASTMATH_H
#include <math.h>
#include <stdint.h>

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

#endif
