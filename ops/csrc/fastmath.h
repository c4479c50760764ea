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

/* softplus(x) = max(x, 0) + log1p(e), e = exp(-|x|) in (0, 1]. log1p(e) = e q(e) with q a
 * degree-9 polynomial fitted to log1p(e) / e on [0, 1] (Chebyshev fit, relative error < 2e-7 in
 * float32, exact as e -> 0): no division, so the loop costs FMAs only. Vectorisable like
 * fast_expf. */
static inline float softplus_f32(float x) {
  const float e = fast_expf(-fabsf(x));
  const float q =
      1.0f +
      e * (-0.4999985f +
           e * (0.333291f +
                e * (-0.24947809f +
                     e * (0.19651492f +
                          e * (-0.15251452f +
                               e * (0.105332285f +
                                    e * (-0.05643503f + e * (0.019649167f + e * -0.0032140363f))))))));
  return (x > 0.0f ? x : 0.0f) + e * q;
}

static inline float sigmoid_f32(float x) { return 1.0f / (1.0f + fast_expf(-x)); }

static inline double exp_f64(double x) { return exp(x); }
static inline double softplus_f64(double x) { return (x > 0 ? x : 0) + log1p(exp(-fabs(x))); }
static inline double sigmoid_f64(double x) { return 1.0 / (1.0 + exp(-x)); }

#endif
