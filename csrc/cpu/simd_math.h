// Fast exp2 and the gate math for the CPU SIMD vector types, generic over V.
//
// Include inside the anonymous namespace of a SIMD translation unit, after V and these
// primitives are defined for it:
//   V fmadd(V a, V b, V c)          a * b + c
//   void floor_split(V u, V& n, V& f)
//                                   f in [0, 1) with u = floor(u) + f for finite u (f may be
//                                   anything where u is infinite), and an n that scale_pow2 reads
//                                   as floor(u); NaN stays NaN
//   V scale_pow2(V p, V n)          p * 2^n for p in [1, 2) and the n of floor_split: inf where
//                                   n >= 128, 0 (or the exact subnormal) where n < -126, NaN for NaN
//   V neg_abs(V v)                  -|v| (NaN stays NaN)
//   V select_if_negative(V m, V a, V b)
//                                   a where m's sign bit is set, else b
//   V rcp_estimate(V)               a reciprocal estimate with at least 11 good bits

// 2^u for every u: 0 far below (or a subnormal), +inf from 128 on, NaN for NaN. u = floor(u) + f,
// f in [0, 1), 2^f by a degree-5 polynomial fitted for relative error (1.7e-7 on [0, 1) in float;
// weighted least squares on Chebyshev nodes), evaluated in Estrin form (three FMAs deep, not five).
template <typename V>
inline V exp2_full(V u) {
  V n, f;
  floor_split(u, n, f);
  const V f2 = f * f;
  const V p01 = fmadd(V(6.931529641151428e-1f), f, V(9.999999403953552e-1f));
  const V p23 = fmadd(V(5.582359433174133e-2f), f, V(2.4015453457832336e-1f));
  const V p45 = fmadd(V(1.8762336112558842e-3f), f, V(8.992589078843594e-3f));
  return scale_pow2(fmadd(fmadd(p45, f2, p23), f2, p01), n);
}

// 1 / p for p in [1, 2]: the hardware estimate refined by one Newton step.
template <typename V>
inline V reciprocal(V p) {
  const V r = rcp_estimate(p);
  return r * fmadd(-p, r, V(2.0f));
}

// lgf::sigmoid_slope for both gates, from w = -z log2(e): E = 2^-|w| = exp(-|z|) never overflows
// and q = 1 / (1 + E) has its denominator in [1, 2]. Each gate has its own reciprocal, so a NaN
// in one gate does not reach the other gate's sums (as in the reference).
template <typename V>
inline void sigmoid_slope_from_exp2_arg(V w, V& s, V& ds) {
  const V e = exp2_full(neg_abs(w));
  const V q = reciprocal(V(1.0f) + e);
  const V eq = e * q;
  s = select_if_negative(w, q, eq);  // w < 0 is z > 0
  ds = eq * q;
}

template <typename V>
inline void sigmoid_slope_pair_fast(V z1, V z2, V& s1, V& ds1, V& s2, V& ds2) {
  sigmoid_slope_from_exp2_arg(z1 * V(float(lgf::kNegLog2e)), s1, ds1);
  sigmoid_slope_from_exp2_arg(z2 * V(float(lgf::kNegLog2e)), s2, ds2);
}

// lgf::forward_point as s_l l + s_g g = l / d1 + g / d2 with d = 1 + 2^u in [1, +inf]: two true
// divisions. Each quotient is bounded by |l| or |g|, and a saturated gate's d = inf gives exactly
// 0 (NaN for an infinite l or g, as in the reference). A common denominator d1 d2 (one division)
// would overflow for large |l| and needs 2^u clamped, which leaves saturated gates at ~2^-62
// instead of 0. The divider runs beside the FMA pipes: the second division measured no slower
// than rcp14 with a Newton step (and a fix-up for d = inf) in its place.
template <typename V>
inline V forward_point_fast(V x, V l, const lgf::Exp2GateCoef<V>& k) {
  const V one(1.0f);
  const V d1 = one + exp2_full(fmadd(k.ua_l, l, k.uk_l));
  const V d2 = one + exp2_full(fmadd(k.ua_g, l, k.uk_g));
  return fmadd(k.gamma, l / d1 + k.g / d2, x);
}
