// AVX-512 row kernels for float. This file is compiled for AVX-512F/DQ (the pragma below) and
// its code runs only after row_kernels_float() has checked the CPU. It must not include torch or
// standard-library headers with inline code, so that no AVX2 copy of a shared inline function can
// replace the portable one at link time; everything here lives in an anonymous namespace.
#pragma GCC target("avx512f,avx512dq,avx2,fma")

#include <immintrin.h>

#include "cpu/row_kernels.h"

namespace {

struct Vec16f {
  using Scalar = float;
  static constexpr int kWidth = 16;
  __m512 v;
  Vec16f() = default;
  Vec16f(__m512 x) : v(x) {}                 // NOLINT
  Vec16f(float x) : v(_mm512_set1_ps(x)) {}  // NOLINT: broadcast
  static Vec16f load(const float* p) { return Vec16f(_mm512_loadu_ps(p)); }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  // Masked access: lanes outside the mask are not touched (they need not exist) and load as 0.
  using Mask = __mmask16;
  static Mask lanes(int64_t lo, int64_t hi) {  // lanes [lo, hi), 0 <= lo, hi <= 16
    return lo < hi ? static_cast<Mask>(((1u << hi) - 1) & ~((1u << lo) - 1)) : Mask(0);
  }
  static Vec16f load(const float* p, Mask m) { return Vec16f(_mm512_maskz_loadu_ps(m, p)); }
  void store(float* p, Mask m) const { _mm512_mask_storeu_ps(p, m, v); }
};

inline Vec16f operator+(Vec16f a, Vec16f b) { return _mm512_add_ps(a.v, b.v); }
inline Vec16f operator-(Vec16f a, Vec16f b) { return _mm512_sub_ps(a.v, b.v); }
inline Vec16f operator*(Vec16f a, Vec16f b) { return _mm512_mul_ps(a.v, b.v); }
inline Vec16f operator/(Vec16f a, Vec16f b) { return _mm512_div_ps(a.v, b.v); }
inline Vec16f operator-(Vec16f a) { return _mm512_sub_ps(_mm512_setzero_ps(), a.v); }

inline Vec16f zero_outside(Vec16f a, Vec16f::Mask m) { return _mm512_maskz_mov_ps(m, a.v); }
inline Vec16f fmadd(Vec16f a, Vec16f b, Vec16f c) { return _mm512_fmadd_ps(a.v, b.v, c.v); }
inline Vec16f rcp_estimate(Vec16f a) { return _mm512_rcp14_ps(a.v); }
// vreduceps gives u - floor(u) in one instruction (0 for infinite u), and vscalefps applies
// floor() to its exponent operand itself and saturates (0 far below, inf from 128 on), so u
// serves as n unclamped.
inline void floor_split(Vec16f u, Vec16f& n, Vec16f& f) {
  f = _mm512_reduce_ps(u.v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  n = u;
}
inline Vec16f scale_pow2(Vec16f p, Vec16f n) { return _mm512_scalef_ps(p.v, n.v); }
inline Vec16f neg_abs(Vec16f v) { return _mm512_or_ps(v.v, _mm512_set1_ps(-0.0f)); }
inline Vec16f select_if_negative(Vec16f m, Vec16f a, Vec16f b) {
  return _mm512_mask_blend_ps(_mm512_movepi32_mask(_mm512_castps_si512(m.v)), b.v, a.v);
}

#include "cpu/simd_math.h"

inline void sigmoid_slope_pair(Vec16f z1, Vec16f z2, Vec16f& s1, Vec16f& ds1, Vec16f& s2, Vec16f& ds2) {
  sigmoid_slope_pair_fast(z1, z2, s1, ds1, s2, ds2);
}
inline lgf::Exp2GateCoef<Vec16f> prepare_forward(const lgf::GateCoef<Vec16f>& k) { return lgf::exp2_gate_coef(k); }
inline Vec16f forward_point(Vec16f x, Vec16f l, const lgf::Exp2GateCoef<Vec16f>& k) { return forward_point_fast(x, l, k); }

// Lane k of the result is element k - 1 (k + 1) of the concatenation prev|cur (cur|next).
inline Vec16f left_neighbors(Vec16f cur, Vec16f prev) {
  return _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(cur.v), _mm512_castps_si512(prev.v), 15));
}
inline Vec16f right_neighbors(Vec16f cur, Vec16f next) {
  return _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(next.v), _mm512_castps_si512(cur.v), 1));
}

inline float hsum(Vec16f a) { return _mm512_reduce_add_ps(a.v); }

#include "cpu/row_kernels_impl.h"

}  // namespace

namespace lgf {
namespace cpu {

const RowKernels<float>& row_kernels_float_avx512() {
  static const RowKernels<float> table = make_row_kernels<Vec16f>();
  return table;
}

}  // namespace cpu
}  // namespace lgf
