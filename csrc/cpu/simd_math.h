// Fast exp2 and the gate math for the CPU SIMD vector types, generic over V.
//
// Include inside the anonymous namespace of a SIMD translation unit, after V and these
// primitives are defined for it:
//   V fmadd(V a, V b, V c)          a * b + c
//   void floor_split(V u, V& n, V& f)
//                                   for any finite u: f in [0, 1) with f = u - floor(u) when u < 62,
//                                   and an n that scale_pow2 reads as min(floor(u), 62)
//   V scale_pow2(V p, V n)          p * 2^n for the n of floor_split; for u < -63 the result may be
//                                   0 or p * 2^-63 (both vanish next to the 1 it is added to)
//   V rcp_estimate(V)               a reciprocal estimate with at least 11 good bits

constexpr float kNegLog2e = -1.4426950408889634f;

// 2^u for u < 62, and a value in [2^62, 2^63) above: (1 + 2^u1)(1 + 2^u2) < 2^127 stays finite, and
// a sigmoid 1 / (1 + 2^u) there is below 2.2e-19, as it should be. u = floor(u) + f, f in [0, 1),
// 2^f by a degree-5 polynomial fitted for relative error (1.7e-7 on [0, 1) in float; weighted least
// squares on Chebyshev nodes), evaluated in Estrin form (three FMAs deep instead of five).
template <typename V>
inline V exp2_bounded(V u) {
  V n, f;
  floor_split(u, n, f);
  const V f2 = f * f;
  const V p01 = fmadd(V(6.931529641151428e-1f), f, V(9.999999403953552e-1f));
  const V p23 = fmadd(V(5.582359433174133e-2f), f, V(2.4015453457832336e-1f));
  const V p45 = fmadd(V(1.8762336112558842e-3f), f, V(8.992589078843594e-3f));
  return scale_pow2(fmadd(fmadd(p45, f2, p23), f2, p01), n);
}

// 1 + 2^u for both gates.
template <typename V>
inline void gate_denominators(V u1, V u2, V& d1, V& d2) {
  const V one(1.0f);
  d1 = one + exp2_bounded(u1);
  d2 = one + exp2_bounded(u2);
}

// 1 / p: the hardware estimate refined by one Newton step.
template <typename V>
inline V reciprocal(V p) {
  const V r = rcp_estimate(p);
  return r * fmadd(-p, r, V(2.0f));
}

// Both gate sigmoids with one reciprocal: r = 1 / (d1 d2), s1 = r d2, s2 = r d1.
template <typename V>
inline void sigmoid_pair_fast(V z1, V z2, V& s1, V& s2) {
  V d1, d2;
  gate_denominators(z1 * V(kNegLog2e), z2 * V(kNegLog2e), d1, d2);
  const V r = reciprocal(d1 * d2);
  s1 = r * d2;
  s2 = r * d1;
}

// The forward's gate coefficients with a_l, kl, a_g, kg multiplied by -log2(e), so that one FMA
// gives the exp2 argument u = -z log2(e) (see prepare_forward).
template <typename V>
struct Exp2GateCoef {
  V a_l, kl, a_g, kg, gamma, g;
};

template <typename V>
inline Exp2GateCoef<V> exp2_gate_coef(const lgf::GateCoef<V>& k) {
  const V s(kNegLog2e);
  return {k.a_l * s, k.kl * s, k.a_g * s, k.kg * s, k.gamma, k.g};
}

// lgf::forward_point with the mix taken over the common denominator:
//   s_l l + s_g g = (d2 l + d1 g) / (d1 d2)
// One true division is cheaper here than the reciprocal estimate, its Newton step and a multiply
// (the divider runs beside the FMA pipes), and exact.
template <typename V>
inline V forward_point_fast(V x, V l, const Exp2GateCoef<V>& k) {
  V d1, d2;
  gate_denominators(fmadd(k.a_l, l, k.kl), fmadd(k.a_g, l, k.kg), d1, d2);
  const V mix = fmadd(d1, k.g, d2 * l) / (d1 * d2);
  return fmadd(k.gamma, mix, x);
}
