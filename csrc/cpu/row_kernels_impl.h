// Implementations of the row kernels (see row_kernels.h), generic over a SIMD vector type V.
//
// V provides: typename V::Scalar, V::kWidth, V(Scalar) (broadcast), V::load(const Scalar*),
// store(Scalar*), + - * / and unary -, and free functions lgf_exp(V) and hsum(V).
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

// sum_{i,j} f[i*3+j] * r_i[o + j*step]: the 3x3 stencil at offset o of three padded rows.
// One partial sum per row keeps the dependency chain short (3 FMAs deep instead of 9).
template <typename V, typename T>
inline V stencil3x3(const Filter9<V>& f, const T* r0, const T* r1, const T* r2, int64_t o, int64_t step) {
  V a0 = f.w[0] * V::load(r0 + o) + f.w[1] * V::load(r0 + o + step) + f.w[2] * V::load(r0 + o + 2 * step);
  V a1 = f.w[3] * V::load(r1 + o) + f.w[4] * V::load(r1 + o + step) + f.w[5] * V::load(r1 + o + 2 * step);
  V a2 = f.w[6] * V::load(r2 + o) + f.w[7] * V::load(r2 + o + step) + f.w[8] * V::load(r2 + o + 2 * step);
  return (a0 + a1) + a2;
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

template <typename V>
void nchw_forward(const typename V::Scalar* r0, const typename V::Scalar* r1, const typename V::Scalar* r2,
                  const lgf::cpu::PlaneCoef<typename V::Scalar>& p, typename V::Scalar* y, int64_t Wp) {
  const Filter9<V> f = broadcast_filter<V>(p.w);
  const V bias(p.bias);
  const lgf::GateCoef<V> k = broadcast_coef<V>(p.k);
  // Two independent vectors per iteration give the out-of-order core more to overlap.
  int64_t w = 0;
  for (; w + 2 * V::kWidth <= Wp; w += 2 * V::kWidth) {
    const int64_t w2 = w + V::kWidth;
    V l1 = stencil3x3(f, r0, r1, r2, w, 1) + bias;
    V l2 = stencil3x3(f, r0, r1, r2, w2, 1) + bias;
    lgf::forward_point(V::load(r1 + w + 1), l1, k).store(y + w);
    lgf::forward_point(V::load(r1 + w2 + 1), l2, k).store(y + w2);
  }
  for (; w < Wp; w += V::kWidth) {
    V l = stencil3x3(f, r0, r1, r2, w, 1) + bias;
    lgf::forward_point(V::load(r1 + w + 1), l, k).store(y + w);
  }
}

template <typename V>
void nchw_backward_dl(const typename V::Scalar* r0, const typename V::Scalar* r1, const typename V::Scalar* r2,
                      const typename V::Scalar* dy, const lgf::cpu::PlaneCoef<typename V::Scalar>& p,
                      typename V::Scalar* dl, typename V::Scalar* acc, int64_t Wp) {
  using T = typename V::Scalar;
  const Filter9<V> f = broadcast_filter<V>(p.w);
  const V bias(p.bias);
  const lgf::GateCoef<V> k = broadcast_coef<V>(p.k);
  SlotAcc<V> sums;
  int64_t w = 0;
  for (; w + 2 * V::kWidth <= Wp; w += 2 * V::kWidth) {
    const int64_t w2 = w + V::kWidth;
    V l1 = stencil3x3(f, r0, r1, r2, w, 1) + bias;
    V l2 = stencil3x3(f, r0, r1, r2, w2, 1) + bias;
    V d1 = V::load(dy + w), d2 = V::load(dy + w2);
    lgf::PointGrad<V> pg1 = lgf::backward_point(l1, d1, k);
    lgf::PointGrad<V> pg2 = lgf::backward_point(l2, d2, k);
    pg1.dl.store(dl + 1 + w);
    pg2.dl.store(dl + 1 + w2);
    sums.add(pg1, l1, d1, pg1.dl, r0, r1, r2, w, 1);
    sums.add(pg2, l2, d2, pg2.dl, r0, r1, r2, w2, 1);
  }
  for (; w < Wp; w += V::kWidth) {
    V l = stencil3x3(f, r0, r1, r2, w, 1) + bias;
    V d = V::load(dy + w);
    lgf::PointGrad<V> pg = lgf::backward_point(l, d, k);
    pg.dl.store(dl + 1 + w);
    sums.add(pg, l, d, pg.dl, r0, r1, r2, w, 1);
  }
  for (int s = 0; s < lgf::NUM_SLOTS; ++s) acc[s] += T(hsum(sums.s[s]));
}

template <typename V>
void nchw_backward_dx(const typename V::Scalar* d0, const typename V::Scalar* d1, const typename V::Scalar* d2,
                      const typename V::Scalar* dy, const lgf::cpu::PlaneCoef<typename V::Scalar>& p,
                      typename V::Scalar* dx, int64_t Wp) {
  const Filter9<V> f = broadcast_filter<V>(p.w_rot);
  for (int64_t w = 0; w < Wp; w += V::kWidth) {
    (V::load(dy + w) + stencil3x3(f, d0, d1, d2, w, 1)).store(dx + w);
  }
}

// NHWC: vectors run over channels; for each channel vector, sweep the row's pixels.
template <typename V>
void nhwc_forward(const typename V::Scalar* r0, const typename V::Scalar* r1, const typename V::Scalar* r2,
                  const lgf::cpu::BlockCoef<typename V::Scalar>& p, typename V::Scalar* y, int64_t W, int64_t Cp) {
  for (int64_t c = 0; c < Cp; c += V::kWidth) {
    const Filter9<V> f = load_filter<V>(p.w, Cp, c);
    const V bias = V::load(p.bias + c);
    const lgf::GateCoef<V> k = load_coef<V>(p, c);
    int64_t w = 0;
    for (; w + 2 <= W; w += 2) {  // two pixels per iteration, as in nchw_forward
      const int64_t o1 = w * Cp + c, o2 = o1 + Cp;
      V l1 = stencil3x3(f, r0, r1, r2, o1, Cp) + bias;
      V l2 = stencil3x3(f, r0, r1, r2, o2, Cp) + bias;
      lgf::forward_point(V::load(r1 + o1 + Cp), l1, k).store(y + o1);
      lgf::forward_point(V::load(r1 + o2 + Cp), l2, k).store(y + o2);
    }
    for (; w < W; ++w) {
      const int64_t o = w * Cp + c;
      V l = stencil3x3(f, r0, r1, r2, o, Cp) + bias;
      lgf::forward_point(V::load(r1 + o + Cp), l, k).store(y + o);
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
      V l = stencil3x3(f, r0, r1, r2, o, Cp) + bias;
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
      (V::load(dy + o) + stencil3x3(f, d0, d1, d2, o, Cp)).store(dx + o);
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
