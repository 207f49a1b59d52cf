// Per-element math of the fused LGF op (docs/design.md §2), written once for every backend.
//
// The functions are templates over the compute type T: float or double on the host and the
// device, and the CPU vector types of csrc/cpu (which provide +, -, *, / and either lgf_exp and <
// or their own sigmoid_pair / sigmoid_slope_pair).
// fp16/bf16 inputs are converted to float before they reach these functions.
#pragma once

#include <cmath>
#include <limits>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define LGF_HD __host__ __device__ __forceinline__
#else
#define LGF_HD inline
#endif

namespace lgf {

LGF_HD float lgf_exp(float v) {
#if defined(__CUDA_ARCH__)
  return __expf(v);
#else
  return std::exp(v);
#endif
}

LGF_HD double lgf_exp(double v) {
#if defined(__CUDA_ARCH__)
  return ::exp(v);
#else
  return std::exp(v);
#endif
}

// exp(-z) = 2^(z * kNegLog2e)
constexpr double kNegLog2e = -1.4426950408889634;

LGF_HD float lgf_exp2(float v) {
#if defined(__CUDA_ARCH__)
  return exp2f(v);  // one ex2.approx (2 ulp) with -ftz=true
#else
  return std::exp2(v);
#endif
}

LGF_HD double lgf_exp2(double v) {
#if defined(__CUDA_ARCH__)
  return ::exp2(v);
#else
  return std::exp2(v);
#endif
}

LGF_HD float lgf_fmin(float a, float b) {
#if defined(__CUDA_ARCH__)
  return fminf(a, b);
#else
  return std::fmin(a, b);
#endif
}

LGF_HD double lgf_fmin(double a, double b) {
#if defined(__CUDA_ARCH__)
  return ::fmin(a, b);
#else
  return std::fmin(a, b);
#endif
}

template <typename T>
LGF_HD T lgf_sigmoid(T z) {
  return T(1) / (T(1) + lgf_exp(-z));
}

// A sigmoid and its slope s' = s (1 - s), both from E = exp(-|z|) in [0, 1]: with q = 1 / (1 + E),
// s = q for z >= 0, s = E q for z < 0, and s' = E q^2. Forming 1 - s instead loses every digit once
// s rounds near 1 (s' then bottoms out at an ulp of 1, ~6e-8 in float, where the truth underflows
// to 0, and large |l| multiply that error), and exp(+|z|) would overflow. A NaN z gives NaN.
template <typename T>
LGF_HD void sigmoid_slope(T z, T& s, T& ds) {
  const bool negative = z < T(0);
  const T e = lgf_exp(negative ? z : -z);
  const T q = T(1) / (T(1) + e);
  const T eq = e * q;
  s = negative ? eq : q;
  ds = eq * q;
}

// The same from u = -z log2(e), in fewer instructions: e = 2^u = exp(-z), s = 1 / (1 + e) and
// s' = (e s) s, in that order. e s = e / (1 + e) <= 1, so nothing overflows or cancels: for z >> 0,
// e is tiny and s' = e; for z << 0, s is tiny and e s is about 1. Where e overflows (z < -88 in
// float), s = 0 and e is capped at the largest finite value so that s' = 0, not inf * 0 (fmin
// keeps the cap for a NaN e, but s is NaN then, so s' is NaN too).
template <typename T>
LGF_HD void sigmoid_slope_exp2(T u, T& s, T& ds) {
  const T e = lgf_exp2(u);
  s = T(1) / (T(1) + e);
  ds = (lgf_fmin(e, std::numeric_limits<T>::max()) * s) * s;
}

template <typename T>
LGF_HD T sigmoid_exp2(T u) {
  return T(1) / (T(1) + lgf_exp2(u));
}

// Both gates at once: the sigmoids (forward) and the sigmoids with their slopes (backward).
// Backends may overload these for their vector types (found by argument-dependent lookup).
template <typename T>
LGF_HD void sigmoid_pair(T z1, T z2, T& s1, T& s2) {
  s1 = lgf_sigmoid(z1);
  s2 = lgf_sigmoid(z2);
}

template <typename T>
LGF_HD void sigmoid_slope_pair(T z1, T z2, T& s1, T& ds1, T& s2, T& ds2) {
  sigmoid_slope(z1, s1, ds1);
  sigmoid_slope(z2, s2, ds2);
}

// Gate coefficients of one (n, c): the parts of z_l and z_g that do not depend on l.
//   z_l = a_l * l + kl,  kl = b_l * g + c_l        z_g = a_g * l + kg,  kg = b_g * g + c_g
template <typename T>
struct GateCoef {
  T a_l, kl, a_g, kg, gamma, g;
};

template <typename T>
LGF_HD GateCoef<T> make_gate_coef(T a_l, T b_l, T c_l, T a_g, T b_g, T c_g, T gamma, T g) {
  GateCoef<T> k;
  k.a_l = a_l;
  k.kl = b_l * g + c_l;
  k.a_g = a_g;
  k.kg = b_g * g + c_g;
  k.gamma = gamma;
  k.g = g;
  return k;
}

// The gate coefficients with the exponents' parts scaled by kNegLog2e, for backends with a fast
// exp2 (the GPU's ex2, the CPU's SIMD polynomial): u_l = -z_l log2(e) = ua_l * l + uk_l (likewise
// u_g) is one FMA, where exp(-z) costs one multiply more per gate. a_l and a_g stay as they are
// for dl. The scaled coefficients are rounded once more, so u is off by a few ulps of |a l| + |k|
// rather than of |z|, and e, s and s' by as much relative to themselves: it shows only where a l
// and k nearly cancel, and stays near 5e-6 for |a l| + |k| = 100 in float (2e-6 unscaled).
template <typename T>
struct Exp2GateCoef {
  T a_l, a_g, gamma, g;
  T ua_l, uk_l, ua_g, uk_g;
};

template <typename T>
LGF_HD Exp2GateCoef<T> exp2_gate_coef(const GateCoef<T>& k) {
  const T s(kNegLog2e);
  return {k.a_l, k.a_g, k.gamma, k.g, k.a_l * s, k.kl * s, k.a_g * s, k.kg * s};
}

// The sigmoids of both gates at l (forward), and with their slopes (backward), from either form.
template <typename T>
LGF_HD void gate_sigmoids(T l, const GateCoef<T>& k, T& s_l, T& s_g) {
  sigmoid_pair(k.a_l * l + k.kl, k.a_g * l + k.kg, s_l, s_g);
}

template <typename T>
LGF_HD void gate_slopes(T l, const GateCoef<T>& k, T& s_l, T& ds_l, T& s_g, T& ds_g) {
  sigmoid_slope_pair(k.a_l * l + k.kl, k.a_g * l + k.kg, s_l, ds_l, s_g, ds_g);
}

template <typename T>
LGF_HD void gate_sigmoids(T l, const Exp2GateCoef<T>& k, T& s_l, T& s_g) {
  s_l = sigmoid_exp2(k.ua_l * l + k.uk_l);
  s_g = sigmoid_exp2(k.ua_g * l + k.uk_g);
}

template <typename T>
LGF_HD void gate_slopes(T l, const Exp2GateCoef<T>& k, T& s_l, T& ds_l, T& s_g, T& ds_g) {
  sigmoid_slope_exp2(k.ua_l * l + k.uk_l, s_l, ds_l);
  sigmoid_slope_exp2(k.ua_g * l + k.uk_g, s_g, ds_g);
}

// y = x + gamma * (s_l * l + s_g * g). Each product is bounded by |l| or |g| (s in [0, 1]), so a
// finite y stays finite; a sigmoid that underflows to 0 gives 0 * l = 0 (NaN for an infinite l,
// as in the reference). Coef is GateCoef<T> or Exp2GateCoef<T>.
template <typename T, typename Coef>
LGF_HD T forward_point(T x, T l, const Coef& k) {
  T s_l, s_g;
  gate_sigmoids(l, k, s_l, s_g);
  return x + k.gamma * (s_l * l + s_g * k.g);
}

// Everything one pixel contributes to the backward pass, given l (recomputed) and dy.
//   mix = s_l*l + s_g*g                  (dgamma = sum dy * mix)
//   dzl = t*l*s_l*(1-s_l), dzg = t*g*s_g*(1-s_g)   with t = dy * gamma (l times the slope
//                                        first: the slope is at most 1/4, so where it underflows
//                                        to 0 the product is 0, not t*l = inf times 0)
//   tsg = t * s_g                        (dg = sum tsg + b_l * sum dzl + b_g * sum dzg)
//   dl  = t*s_l + a_l*dzl + a_g*dzg      (feeds dbias, dweight and dx)
template <typename T>
struct PointGrad {
  T dl, mix, tsg, dzl, dzg;
};

template <typename T, typename Coef>
LGF_HD PointGrad<T> backward_point(T l, T dy, const Coef& k) {
  T s_l, ds_l, s_g, ds_g;
  gate_slopes(l, k, s_l, ds_l, s_g, ds_g);
  T t = dy * k.gamma;
  PointGrad<T> r;
  r.mix = s_l * l + s_g * k.g;
  r.dzl = t * (l * ds_l);
  r.dzg = t * (k.g * ds_g);
  r.tsg = t * s_g;
  r.dl = t * s_l + k.a_l * r.dzl + k.a_g * r.dzg;
  return r;
}

// Slots of the per-(n, c) partial sums written by the backward kernels before the
// fixed-order reduction. dg[n,c] = S_TSG + b_l*S_DZL + b_g*S_DZG; db_l = sum_n g*S_DZL; etc.
enum PartialSlot : int {
  S_MIX = 0,   // sum dy * mix            -> dgamma
  S_TSG = 1,   // sum t * s_g             -> dg
  S_DZL = 2,   // sum dz_l                -> dc_l, db_l (times g), dg (times b_l)
  S_DZG = 3,   // sum dz_g                -> dc_g, db_g (times g), dg (times b_g)
  S_DZL_L = 4, // sum dz_l * l            -> da_l
  S_DZG_L = 5, // sum dz_g * l            -> da_g
  S_DL = 6,    // sum dl                  -> dbias
  S_DW0 = 7,   // sum dl * x[h+i-1, w+j-1] -> dweight[i*3+j], slots 7..15
  NUM_SLOTS = 16
};

}  // namespace lgf
