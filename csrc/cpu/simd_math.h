// Fast exp and sigmoid pair for the CPU SIMD vector types, generic over V.
//
// Include inside the anonymous namespace of a SIMD translation unit, after V and these
// primitives are defined for it:
//   V fmadd(V a, V b, V c)        a * b + c
//   V vmin(V, V), V vmax(V, V)
//   V round_nearest(V)            to the nearest integer (as a float)
//   V scale_pow2(V p, V n)        p * 2^n for integral n with |n| <= 64
//   V rcp_estimate(V)             a reciprocal estimate with at least 11 good bits

// 2^u for |u| <= 64: u = n + f, |f| <= 1/2, 2^f by a degree-5 polynomial fitted for relative
// error (1.6e-7 on [-1/2, 1/2]; coefficients from a weighted least-squares/Lawson fit).
template <typename V>
inline V exp2_bounded(V u) {
  const V n = round_nearest(u);
  const V f = u - n;
  V p = fmadd(V(1.327647129073739e-3f), f, V(9.675540961325169e-3f));
  p = fmadd(p, f, V(5.550713092088699e-2f));
  p = fmadd(p, f, V(2.4022120237350464e-1f));
  p = fmadd(p, f, V(6.931469440460205e-1f));
  p = fmadd(p, f, V(1.0000001192092896f));
  return scale_pow2(p, n);
}

// exp(x), x clamped to +-87 (beyond, the sigmoids it feeds are 0 or 1 to float precision).
template <typename V>
inline V exp_clamped(V x) {
  const V u = x * V(1.4426950408889634f);
  return exp2_bounded(vmax(vmin(u, V(64.0f)), V(-64.0f)));
}

// Both gate sigmoids with one reciprocal: d1 = 1 + e^-z1, d2 = 1 + e^-z2, r = 1 / (d1 d2),
// s1 = r d2, s2 = r d1. The exponents are clamped to +-63 * ln 2 (|z| < 43.7) so that
// d1 d2 < 2^127 stays finite; beyond the clamp a sigmoid is within 1.1e-19 of 0 or 1 anyway.
// The reciprocal is the hardware estimate refined by one Newton step.
template <typename V>
inline void sigmoid_pair_fast(V z1, V z2, V& s1, V& s2) {
  const V k(-1.4426950408889634f), lim(63.0f), one(1.0f);
  const V u1 = vmax(vmin(z1 * k, lim), V(-63.0f));
  const V u2 = vmax(vmin(z2 * k, lim), V(-63.0f));
  const V d1 = one + exp2_bounded(u1);
  const V d2 = one + exp2_bounded(u2);
  const V p = d1 * d2;
  V r = rcp_estimate(p);
  r = r * fmadd(-p, r, V(2.0f));
  s1 = r * d2;
  s2 = r * d1;
}
