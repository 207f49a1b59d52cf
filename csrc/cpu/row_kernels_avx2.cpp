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
  // Masked access: lanes outside the mask are not touched (they need not exist) and load as 0.
  using Mask = __m256i;
  static Mask lanes(int64_t lo, int64_t hi) {  // lanes [lo, hi)
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(lo)), lane),
                               _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(hi)), lane));
  }
  static Vec8f load(const float* p, Mask m) { return Vec8f(_mm256_maskload_ps(p, m)); }
  void store(float* p, Mask m) const { _mm256_maskstore_ps(p, m, v); }
};

inline Vec8f operator+(Vec8f a, Vec8f b) { return _mm256_add_ps(a.v, b.v); }
inline Vec8f operator-(Vec8f a, Vec8f b) { return _mm256_sub_ps(a.v, b.v); }
inline Vec8f operator*(Vec8f a, Vec8f b) { return _mm256_mul_ps(a.v, b.v); }
inline Vec8f operator/(Vec8f a, Vec8f b) { return _mm256_div_ps(a.v, b.v); }
inline Vec8f operator-(Vec8f a) { return _mm256_xor_ps(a.v, _mm256_set1_ps(-0.0f)); }

inline Vec8f zero_outside(Vec8f a, Vec8f::Mask m) { return _mm256_and_ps(a.v, _mm256_castsi256_ps(m)); }
inline Vec8f fmadd(Vec8f a, Vec8f b, Vec8f c) { return _mm256_fmadd_ps(a.v, b.v, c.v); }
inline Vec8f rcp_estimate(Vec8f a) { return _mm256_rcp_ps(a.v); }
// u is clamped to [-127, 128] (NaN passes: minps/maxps return their second operand then) so that
// floor(u) + 127 is a valid biased exponent of 2^n, 0 for n = -127 and inf for n = 128.
inline void floor_split(Vec8f u, Vec8f& n, Vec8f& f) {
  u = _mm256_max_ps(_mm256_set1_ps(-127.0f), _mm256_min_ps(_mm256_set1_ps(128.0f), u.v));
  n = _mm256_floor_ps(u.v);
  f = u - n;
}
// p * 2^n with 2^n built from its exponent bits (0 for n = -127, inf for n = 128; NaN p stays NaN).
inline Vec8f scale_pow2(Vec8f p, Vec8f n) {
  const __m256i e = _mm256_add_epi32(_mm256_cvttps_epi32(n.v), _mm256_set1_epi32(127));
  return p * Vec8f(_mm256_castsi256_ps(_mm256_slli_epi32(e, 23)));
}
inline Vec8f neg_abs(Vec8f v) { return _mm256_or_ps(v.v, _mm256_set1_ps(-0.0f)); }
inline Vec8f select_if_negative(Vec8f m, Vec8f a, Vec8f b) { return _mm256_blendv_ps(b.v, a.v, m.v); }

#include "cpu/simd_math.h"

inline void sigmoid_slope_pair(Vec8f z1, Vec8f z2, Vec8f& s1, Vec8f& ds1, Vec8f& s2, Vec8f& ds2) {
  sigmoid_slope_pair_fast(z1, z2, s1, ds1, s2, ds2);
}
inline lgf::Exp2GateCoef<Vec8f> prepare_forward(const lgf::GateCoef<Vec8f>& k) { return lgf::exp2_gate_coef(k); }
inline Vec8f forward_point(Vec8f x, Vec8f l, const lgf::Exp2GateCoef<Vec8f>& k) { return forward_point_fast(x, l, k); }

// Lane k of the result is element k - 1 (k + 1) of the concatenation prev|cur (cur|next).
inline Vec8f left_neighbors(Vec8f cur, Vec8f prev) {
  const __m256i rotate = _mm256_setr_epi32(7, 0, 1, 2, 3, 4, 5, 6);
  return _mm256_blend_ps(_mm256_permutevar8x32_ps(cur.v, rotate), _mm256_permutevar8x32_ps(prev.v, rotate), 0x01);
}
inline Vec8f right_neighbors(Vec8f cur, Vec8f next) {
  const __m256i rotate = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 0);
  return _mm256_blend_ps(_mm256_permutevar8x32_ps(cur.v, rotate), _mm256_permutevar8x32_ps(next.v, rotate), 0x80);
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
