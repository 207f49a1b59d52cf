// AVX2 + FMA row kernels for float. This file is compiled for AVX2/FMA (the pragma below) and
// its code runs only after row_kernels_float() has checked the CPU. It must not include torch or
// standard-library headers with inline code, so that no AVX2 copy of a shared inline function can
// replace the portable one at link time; everything here lives in an anonymous namespace.
#pragma GCC target("avx2,fma")

#include <immintrin.h>

#include "cpu/row_kernels.h"

namespace {

struct Vec8f {
  using Scalar = float;
  static constexpr int kWidth = 8;
  __m256 v;
  Vec8f() = default;
  Vec8f(__m256 x) : v(x) {}                  // NOLINT
  Vec8f(float x) : v(_mm256_set1_ps(x)) {}   // NOLINT: broadcast
  static Vec8f load(const float* p) { return Vec8f(_mm256_loadu_ps(p)); }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
};

inline Vec8f operator+(Vec8f a, Vec8f b) { return _mm256_add_ps(a.v, b.v); }
inline Vec8f operator-(Vec8f a, Vec8f b) { return _mm256_sub_ps(a.v, b.v); }
inline Vec8f operator*(Vec8f a, Vec8f b) { return _mm256_mul_ps(a.v, b.v); }
inline Vec8f operator/(Vec8f a, Vec8f b) { return _mm256_div_ps(a.v, b.v); }
inline Vec8f operator-(Vec8f a) { return _mm256_xor_ps(a.v, _mm256_set1_ps(-0.0f)); }

// exp(x) = 2^n * e^r with n = round(x / ln 2), |r| <= ln(2)/2; e^r by a degree-6 polynomial
// (Cephes expf coefficients, about 1 ulp). x must keep 2^n a normal float: |x| < 87.
inline __m256 exp_core(__m256 x) {
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 r2 = _mm256_mul_ps(r, r);
  p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

inline __m256 clamp(__m256 x, float bound) {
  return _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(bound)), _mm256_set1_ps(-bound));
}

inline Vec8f lgf_exp(Vec8f a) { return exp_core(clamp(a.v, 87.0f)); }

// Both sigmoids with one reciprocal: with d1 = 1 + e^-z1, d2 = 1 + e^-z2 and r = 1 / (d1 d2),
// s1 = r d2 and s2 = r d1. The exponents are clamped to +-43.6 so that d1 d2 < 2^127 stays
// finite; a sigmoid beyond the clamp is below 2e-19 (or within 2e-19 of 1) either way. The
// reciprocal is the hardware estimate plus one Newton step (relative error about 1e-7).
inline void sigmoid_pair(Vec8f z1, Vec8f z2, Vec8f& s1, Vec8f& s2) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 d1 = _mm256_add_ps(one, exp_core(clamp(_mm256_sub_ps(_mm256_setzero_ps(), z1.v), 43.6f)));
  const __m256 d2 = _mm256_add_ps(one, exp_core(clamp(_mm256_sub_ps(_mm256_setzero_ps(), z2.v), 43.6f)));
  const __m256 p = _mm256_mul_ps(d1, d2);
  __m256 r = _mm256_rcp_ps(p);
  r = _mm256_mul_ps(r, _mm256_fnmadd_ps(p, r, _mm256_set1_ps(2.0f)));
  s1 = _mm256_mul_ps(r, d2);
  s2 = _mm256_mul_ps(r, d1);
}

inline float hsum(Vec8f a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

#include "cpu/row_kernels_impl.h"

}  // namespace

namespace lgf {
namespace cpu {

const RowKernels<float>& row_kernels_float_avx2() {
  static const RowKernels<float> table = make_row_kernels<Vec8f>();
  return table;
}

}  // namespace cpu
}  // namespace lgf
