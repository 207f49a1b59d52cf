// Implementations of the row kernels (see row_kernels.h), generic over a SIMD vector type V.
//
// V provides: typename V::Scalar, V::kWidth, V(Scalar) (broadcast), V::load(const Scalar*),
// store(Scalar*), + - * / and unary -, free functions hsum(V) and either lgf_exp(V) and < (for
// the generic functions of lgf_math.h) or its own sigmoid_slope_pair, prepare_forward and
// forward_point overloads (the SIMD types: simd_math.h), masked access:
// typename V::Mask, V::lanes(lo, hi), V::load(const Scalar*, Mask), store(Scalar*, Mask),
// zero_outside(V, Mask) (0 in the lanes outside the mask, whatever they held, NaN too), and
// lane shifts left_neighbors(cur, prev) / right_neighbors(cur, next) (lane k holds element k - 1
// of prev|cur, or k + 1 of cur|next).
// Include this header only inside an anonymous namespace of a translation unit that also
// defines V, so that each instruction set's instantiations stay private to its file.

template <typename V>
struct Filter9 {
  V w[9];
};

template <typename V, typename T>
inline Filter9<V> broadcast_filter(const T* w) {
  Filter9<V> f;
  for (int k = 0; k < 9; ++k) f.w[k] = V(w[k]);
  return f;
}

// b + sum_{i,j} f[i*3+j] * tap(i, j): the 3x3 stencil from its input vectors. One partial sum
// per row keeps the dependency chain short (3 FMAs deep instead of 9).
template <typename V, typename Tap>
inline V stencil_taps(const Filter9<V>& f, V b, Tap tap) {
  V a[3];
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      const V t = f.w[i * 3 + j] * tap(i, j);
      a[i] = j > 0 ? t + a[i] : i == 0 ? t + b : t;
    }
  }
  return (a[0] + a[1]) + a[2];
}

// b + sum_{i,j} f[i*3+j] * r_i[o + j*step]: the 3x3 stencil at offset o of three rows.
template <typename V, typename T>
inline V stencil3x3(const Filter9<V>& f, const T* r0, const T* r1, const T* r2, int64_t o, int64_t step, V b) {
  const T* const r[3] = {r0 + o, r1 + o, r2 + o};
  return stencil_taps(f, b, [&](int i, int j) { return V::load(r[i] + j * step); });
}

template <typename V, typename T>
inline lgf::GateCoef<V> broadcast_coef(const lgf::GateCoef<T>& k) {
  lgf::GateCoef<V> v;
  v.a_l = V(k.a_l);
  v.kl = V(k.kl);
  v.a_g = V(k.a_g);
  v.kg = V(k.kg);
  v.gamma = V(k.gamma);
  v.g = V(k.g);
  return v;
}

// The forward kernels evaluate forward_point(x, l, prepare_forward(k)). By default that is
// lgf::forward_point itself; a SIMD translation unit may overload both (declared before this
// header) to evaluate the same formula faster.
template <typename V>
inline const lgf::GateCoef<V>& prepare_forward(const lgf::GateCoef<V>& k) {
  return k;
}

template <typename V>
inline lgf::GateCoef<V> load_coef(const lgf::cpu::BlockCoef<typename V::Scalar>& p, int64_t c) {
  lgf::GateCoef<V> v;
  v.a_l = V::load(p.a_l + c);
  v.kl = V::load(p.kl + c);
  v.a_g = V::load(p.a_g + c);
  v.kg = V::load(p.kg + c);
  v.gamma = V::load(p.gamma + c);
  v.g = V::load(p.g + c);
  return v;
}

template <typename V>
inline Filter9<V> load_filter(const typename V::Scalar* w, int64_t Cp, int64_t c) {
  Filter9<V> f;
  for (int k = 0; k < 9; ++k) f.w[k] = V::load(w + k * Cp + c);
  return f;
}

// Running sums of the backward partial slots (lgf_math.h PartialSlot) for one vector lane set.
template <typename V>
struct SlotAcc {
  V s[lgf::NUM_SLOTS];
  SlotAcc() {
    for (int k = 0; k < lgf::NUM_SLOTS; ++k) s[k] = V(typename V::Scalar(0));
  }
  inline void add(const lgf::PointGrad<V>& pg, V l, V dy, V dl, const typename V::Scalar* r0,
                  const typename V::Scalar* r1, const typename V::Scalar* r2, int64_t o, int64_t step) {
    s[lgf::S_MIX] = s[lgf::S_MIX] + dy * pg.mix;
    s[lgf::S_TSG] = s[lgf::S_TSG] + pg.tsg;
    s[lgf::S_DZL] = s[lgf::S_DZL] + pg.dzl;
    s[lgf::S_DZG] = s[lgf::S_DZG] + pg.dzg;
    s[lgf::S_DZL_L] = s[lgf::S_DZL_L] + pg.dzl * l;
    s[lgf::S_DZG_L] = s[lgf::S_DZG_L] + pg.dzg * l;
    s[lgf::S_DL] = s[lgf::S_DL] + dl;
    const typename V::Scalar* rows[3] = {r0, r1, r2};
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j)
        s[lgf::S_DW0 + i * 3 + j] = s[lgf::S_DW0 + i * 3 + j] + dl * V::load(rows[i] + o + j * step);
  }
};

template <int U>
struct Unroll {
  static constexpr int kVectors = U;
};

template <int J0, int J1>
struct Taps {
  static constexpr int kFirst = J0, kEnd = J1;
};

// A vector position w of an unpadded row of W values that touches an edge: the masks of
// columns [w - 1 + j, w - 1 + j + kWidth) that lie inside [0, W) (j = 0, 1, 2), and of the store.
template <typename V>
struct EdgeVector {
  int64_t w;
  typename V::Mask tap[3], out;
  EdgeVector(int64_t w_, int64_t W) : w(w_) {
    for (int j = 0; j < 3; ++j) {
      const int64_t c = w - 1 + j;
      tap[j] = V::lanes(c < 0 ? -c : 0, W - c < V::kWidth ? W - c : V::kWidth);
    }
    out = V::lanes(0, W - w < V::kWidth ? W - w : V::kWidth);
  }
};

// stencil3x3 at an edge vector of unpadded rows r[0..2]: masked loads, zeros outside the row.
template <typename V, typename T>
inline V stencil3x3_edge(const Filter9<V>& f, const T* const (&r)[3], const EdgeVector<V>& e, V b) {
  return stencil_taps(f, b, [&](int i, int j) { return V::load(r[i] + e.w - 1 + j, e.tap[j]); });
}

// stencil3x3 at the vector at 0 of unpadded rows r[0..2] with W > kWidth: column -1 is zero,
// shifted in by left_neighbors instead of a masked load.
template <typename V, typename T>
inline V stencil3x3_left(const Filter9<V>& f, const T* const (&r)[3], V b) {
  return stencil_taps(f, b, [&](int i, int j) {
    return j == 0 ? left_neighbors(V::load(r[i]), V(T(0))) : V::load(r[i] + j - 1);
  });
}

// stencil3x3 at the vector at w = W - kWidth > 0: column W is zero, shifted in by right_neighbors.
template <typename V, typename T>
inline V stencil3x3_right(const Filter9<V>& f, const T* const (&r)[3], int64_t w, V b) {
  return stencil_taps(f, b, [&](int i, int j) {
    return j == 2 ? right_neighbors(V::load(r[i] + w), V(T(0))) : V::load(r[i] + w - 1 + j);
  });
}

// Rows of one plane read in place; see RowKernels::nchw_forward for the arguments. The
// constants are set up once per call; vectors away from the left and right edges use plain
// loads, whole edge vectors a lane shift for their outside column, partial ones masked loads
// (and a masked store).
template <typename V>
void nchw_forward(const typename V::Scalar* x, int64_t xs, int64_t rows, const typename V::Scalar* above,
                  const typename V::Scalar* below, int64_t W, const lgf::cpu::PlaneCoef<typename V::Scalar>& p,
                  typename V::Scalar* y, int64_t ys, const typename V::Scalar* next_x, typename V::Scalar* next_y) {
  using T = typename V::Scalar;
  constexpr int64_t kW = V::kWidth, kLine = 64 / sizeof(T);
  const Filter9<V> f = broadcast_filter<V>(p.w);
  const V bias(p.bias);
  const auto k = prepare_forward(broadcast_coef<V>(p.k));
  // Vectors at [kW, interior_end) stay inside the row with their +-1 column loads; the vector at 0
  // and those from interior_end on (at most two) are edge vectors.
  int64_t interior_end = kW;
  while (interior_end + kW + 1 <= W) interior_end += kW;
  const EdgeVector<V> left(0, W), right[2] = {EdgeVector<V>(interior_end, W), EdgeVector<V>(interior_end + kW, W)};
  const int num_right = interior_end >= W ? 0 : interior_end + kW >= W ? 1 : 2;
  // Whole edge vectors with the row beyond them take their outside column from a lane shift.
  const bool fast_left = W > kW, fast_right = num_right > 0 && right[num_right - 1].w + kW == W;
  const int64_t next_dx = next_x - x, next_dy = next_y - y;
  for (int64_t r = 0; r < rows; ++r) {
    const T* const rr[3] = {r == 0 ? above : x + (r - 1) * xs, x + r * xs, r + 1 == rows ? below : x + (r + 1) * xs};
    // (shifted by one column, rows r0..r2 serve stencil3x3 with plain loads: offset w - 1 + j)
    const T *r0 = rr[0] - 1, *r1 = rr[1] - 1, *r2 = rr[2] - 1;
    T* yr = y + r * ys;
    // Ask for row r of the next plane ahead of time: see RowKernels::nchw_forward.
    for (int64_t b = 0; b < W; b += kLine) {
      __builtin_prefetch(rr[1] + next_dx + b);
      __builtin_prefetch(yr + next_dy + b, 1);
    }
    auto edge = [&](const EdgeVector<V>& e) {
      forward_point(V::load(rr[1] + e.w, e.tap[1]), stencil3x3_edge(f, rr, e, bias), k).store(yr + e.w, e.out);
    };
    if (fast_left) {
      forward_point(V::load(rr[1]), stencil3x3_left(f, rr, bias), k).store(yr);
    } else {
      edge(left);
    }
    // Up to three independent vectors at a time: the out-of-order core overlaps their long
    // dependency chains (measured: 3 beats 2 by ~10%, 4 gains nothing).
    auto interior = [&](int64_t w, auto unroll) {
      constexpr int U = decltype(unroll)::kVectors;
      V l[U];
      for (int u = 0; u < U; ++u) l[u] = stencil3x3(f, r0, r1, r2, w + u * kW, 1, bias);
      for (int u = 0; u < U; ++u) forward_point(V::load(rr[1] + w + u * kW), l[u], k).store(yr + w + u * kW);
    };
    int64_t w = kW;
    for (; w + 3 * kW <= interior_end; w += 3 * kW) interior(w, Unroll<3>());
    for (; w + 2 * kW <= interior_end; w += 2 * kW) interior(w, Unroll<2>());
    for (; w < interior_end; w += kW) interior(w, Unroll<1>());
    for (int e = 0; e < num_right; ++e) {
      if (fast_right && e + 1 == num_right) {
        forward_point(V::load(rr[1] + right[e].w), stencil3x3_right(f, rr, right[e].w, bias), k).store(yr + right[e].w);
      } else {
        edge(right[e]);
      }
    }
  }
}

// Columns [0, W) of one row: whole vectors, then a last vector (if W is not a multiple of the
// width) whose lanes beyond W - 1 add nothing to the sums and leave their dl 0 (their x are zero
// padding, so with an infinite weight or an infinite neighbour their l and slopes can be NaN).
template <typename V>
void nchw_backward_dl(const typename V::Scalar* r0, const typename V::Scalar* r1, const typename V::Scalar* r2,
                      const typename V::Scalar* dy, const lgf::cpu::PlaneCoef<typename V::Scalar>& p,
                      typename V::Scalar* dl, typename V::Scalar* acc, int64_t W) {
  using T = typename V::Scalar;
  const Filter9<V> f = broadcast_filter<V>(p.w);
  const V bias(p.bias);
  const lgf::GateCoef<V> k = broadcast_coef<V>(p.k);
  const int64_t whole = W / V::kWidth * V::kWidth;
  SlotAcc<V> sums;
  int64_t w = 0;
  for (; w + 2 * V::kWidth <= whole; w += 2 * V::kWidth) {
    const int64_t w2 = w + V::kWidth;
    V l1 = stencil3x3(f, r0, r1, r2, w, 1, bias);
    V l2 = stencil3x3(f, r0, r1, r2, w2, 1, bias);
    V d1 = V::load(dy + w), d2 = V::load(dy + w2);
    lgf::PointGrad<V> pg1 = lgf::backward_point(l1, d1, k);
    lgf::PointGrad<V> pg2 = lgf::backward_point(l2, d2, k);
    pg1.dl.store(dl + 1 + w);
    pg2.dl.store(dl + 1 + w2);
    sums.add(pg1, l1, d1, pg1.dl, r0, r1, r2, w, 1);
    sums.add(pg2, l2, d2, pg2.dl, r0, r1, r2, w2, 1);
  }
  for (; w < whole; w += V::kWidth) {
    V l = stencil3x3(f, r0, r1, r2, w, 1, bias);
    V d = V::load(dy + w);
    lgf::PointGrad<V> pg = lgf::backward_point(l, d, k);
    pg.dl.store(dl + 1 + w);
    sums.add(pg, l, d, pg.dl, r0, r1, r2, w, 1);
  }
  if (whole < W) {
    const typename V::Mask inside = V::lanes(0, W - whole);
    V l = stencil3x3(f, r0, r1, r2, whole, 1, bias);
    V d = V::load(dy + whole);
    lgf::PointGrad<V> pg = lgf::backward_point(l, d, k);
    pg.dl.store(dl + 1 + whole, inside);
    SlotAcc<V> tail;
    tail.add(pg, l, d, pg.dl, r0, r1, r2, whole, 1);
    for (int s = 0; s < lgf::NUM_SLOTS; ++s) sums.s[s] = sums.s[s] + zero_outside(tail.s[s], inside);
  }
  for (int s = 0; s < lgf::NUM_SLOTS; ++s) acc[s] += T(hsum(sums.s[s]));
}

template <typename V>
void nchw_backward_dx(const typename V::Scalar* d0, const typename V::Scalar* d1, const typename V::Scalar* d2,
                      const typename V::Scalar* dy, const lgf::cpu::PlaneCoef<typename V::Scalar>& p,
                      typename V::Scalar* dx, int64_t Wp) {
  const Filter9<V> f = broadcast_filter<V>(p.w_rot);
  for (int64_t w = 0; w < Wp; w += V::kWidth) {
    stencil3x3(f, d0, d1, d2, w, 1, V::load(dy + w)).store(dx + w);
  }
}

// One channel vector (channels [c, c + kWidth) of rows rp, the last one masked when cb is not a
// multiple of the width) of pixels [w0, w1) of one row.
template <typename V, bool kMasked>
void nhwc_forward_pixels(const typename V::Scalar* const (&rp)[3], int64_t xw, int64_t w0, int64_t w1,
                         int64_t W, int64_t c, typename V::Mask m, int64_t Cp,
                         const lgf::cpu::BlockCoef<typename V::Scalar>& p, typename V::Scalar* yr, int64_t yw,
                         int64_t next_x, int64_t next_y) {
  using T = typename V::Scalar;
  auto ld = [m](const T* q) {
    if constexpr (kMasked) {
      return V::load(q, m);
    } else {
      (void)m;
      return V::load(q);
    }
  };
  const Filter9<V> f = load_filter<V>(p.w, Cp, c);
  const V bias = V::load(p.bias + c);
  const auto k = prepare_forward(load_coef<V>(p, c));
  const T* q[3] = {rp[0] + c + w0 * xw, rp[1] + c + w0 * xw, rp[2] + c + w0 * xw};
  T* out = yr + c + w0 * yw;
  auto store = [&](V v, int u) {
    if constexpr (kMasked) {
      v.store(out + u * yw, m);
    } else {
      v.store(out + u * yw);
    }
  };
  // U pixels from q on whose columns [J0, J1) lie inside the image: stencils first, then the gates
  // (independent chains). Columns outside are zeros that the filter still multiplies, as in every
  // other stencil here and in the reference's zero padding (an infinite weight gives NaN there).
  auto pixels = [&](auto unroll, auto taps) {
    constexpr int U = decltype(unroll)::kVectors, J0 = decltype(taps)::kFirst, J1 = decltype(taps)::kEnd;
    V l[U];
    for (int u = 0; u < U; ++u) {
      const T* const qu[3] = {q[0] + u * xw, q[1] + u * xw, q[2] + u * xw};
      l[u] = stencil_taps(f, bias, [&](int i, int j) { return j < J0 || j >= J1 ? V(T(0)) : ld(qu[i] + (j - 1) * xw); });
    }
    for (int u = 0; u < U; ++u) {
      // Pixels are short channel runs C apart in a channels_last tensor, which the hardware
      // prefetcher does not follow: ask for the lines the next call reads from the new input
      // row and writes in y (next_x / next_y elements from this call's).
      __builtin_prefetch(q[2] + u * xw + next_x);
      __builtin_prefetch(out + u * yw + next_y, 1);
      store(forward_point(ld(q[1] + u * xw), l[u], k), u);
    }
    for (int i = 0; i < 3; ++i) q[i] += U * xw;
    out += U * yw;
  };
  if (W == 1) {
    pixels(Unroll<1>(), Taps<1, 2>());
    return;
  }
  int64_t w = w0;
  if (w == 0) {
    pixels(Unroll<1>(), Taps<1, 3>());
    ++w;
  }
  const int64_t end = w1 < W ? w1 : W - 1;
  for (; w + 3 <= end; w += 3) pixels(Unroll<3>(), Taps<0, 3>());
  for (; w < end; ++w) pixels(Unroll<1>(), Taps<0, 3>());
  if (w1 == W) pixels(Unroll<1>(), Taps<0, 2>());
}

// Row by row, blocks of kPixels pixels, every channel vector of a block before the next block:
// the per-channel constants are reloaded once per block. (One channel vector's pixels are C
// values apart and share few L1 sets; blocks of 12-16 pixels ran faster here than 32 or 64,
// and 8 slower.)
template <typename V>
void nhwc_forward(const lgf::cpu::NhwcRows<typename V::Scalar>& in, int64_t rows, int64_t W, int64_t cb, int64_t Cp,
                  const lgf::cpu::BlockCoef<typename V::Scalar>& p, typename V::Scalar* y, int64_t ys, int64_t yw) {
  using T = typename V::Scalar;
  constexpr int64_t kPixels = 16;
  const int64_t cfull = cb / V::kWidth * V::kWidth;
  for (int64_t r = 0; r < rows; ++r) {
    const T* const rp[3] = {r > 0 ? in.x + (r - 1) * in.xs : in.above, in.x + r * in.xs,
                            r + 1 < rows ? in.x + (r + 1) * in.xs : in.below};
    for (int64_t w0 = 0; w0 < W; w0 += kPixels) {
      const int64_t w1 = w0 + kPixels < W ? w0 + kPixels : W;
      // the next call: the next channel vector, or the first one of the next pixel block
      auto next = [&](int64_t c, int64_t stride) { return c + V::kWidth < cb ? V::kWidth : kPixels * stride - c; };
      for (int64_t c = 0; c < cfull; c += V::kWidth) {
        nhwc_forward_pixels<V, false>(rp, in.xw, w0, w1, W, c, V::lanes(0, V::kWidth), Cp, p, y + r * ys, yw,
                                      next(c, in.xw), next(c, yw));
      }
      if (cfull < cb) {
        nhwc_forward_pixels<V, true>(rp, in.xw, w0, w1, W, cfull, V::lanes(0, cb - cfull), Cp, p, y + r * ys, yw,
                                     next(cfull, in.xw), next(cfull, yw));
      }
    }
  }
}

template <typename V>
void nhwc_backward_dl(const typename V::Scalar* r0, const typename V::Scalar* r1, const typename V::Scalar* r2,
                      const typename V::Scalar* dy, const lgf::cpu::BlockCoef<typename V::Scalar>& p,
                      typename V::Scalar* dl, typename V::Scalar* acc, int64_t W, int64_t Cp) {
  for (int64_t c = 0; c < Cp; c += V::kWidth) {
    const Filter9<V> f = load_filter<V>(p.w, Cp, c);
    const V bias = V::load(p.bias + c);
    const lgf::GateCoef<V> k = load_coef<V>(p, c);
    SlotAcc<V> sums;
    for (int64_t w = 0; w < W; ++w) {
      const int64_t o = w * Cp + c;
      V l = stencil3x3(f, r0, r1, r2, o, Cp, bias);
      V d = V::load(dy + o);
      lgf::PointGrad<V> pg = lgf::backward_point(l, d, k);
      pg.dl.store(dl + o + Cp);
      sums.add(pg, l, d, pg.dl, r0, r1, r2, o, Cp);
    }
    for (int s = 0; s < lgf::NUM_SLOTS; ++s) (V::load(acc + s * Cp + c) + sums.s[s]).store(acc + s * Cp + c);
  }
}

template <typename V>
void nhwc_backward_dx(const typename V::Scalar* d0, const typename V::Scalar* d1, const typename V::Scalar* d2,
                      const typename V::Scalar* dy, const lgf::cpu::BlockCoef<typename V::Scalar>& p,
                      typename V::Scalar* dx, int64_t W, int64_t Cp) {
  for (int64_t c = 0; c < Cp; c += V::kWidth) {
    const Filter9<V> f = load_filter<V>(p.w_rot, Cp, c);
    for (int64_t w = 0; w < W; ++w) {
      const int64_t o = w * Cp + c;
      stencil3x3(f, d0, d1, d2, o, Cp, V::load(dy + o)).store(dx + o);
    }
  }
}

template <typename V>
lgf::cpu::RowKernels<typename V::Scalar> make_row_kernels() {
  lgf::cpu::RowKernels<typename V::Scalar> t;
  t.nchw_forward = &nchw_forward<V>;
  t.nchw_backward_dl = &nchw_backward_dl<V>;
  t.nchw_backward_dx = &nchw_backward_dx<V>;
  t.nhwc_forward = &nhwc_forward<V>;
  t.nhwc_backward_dl = &nhwc_backward_dl<V>;
  t.nhwc_backward_dx = &nhwc_backward_dx<V>;
  return t;
}
