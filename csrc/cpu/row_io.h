// Moving rows between tensors (any dtype, any strides) and the compute-type row buffers of
// row_kernels.h. Converting here is what lets the hot loops see only float or double.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu/row_kernels.h"
#include "lgf_common.h"

namespace lgf {
namespace cpu {

constexpr int64_t kLanes = 16;     // NHWC channel blocks are padded to a multiple of the SIMD width
constexpr int64_t kRowAlign = 16;  // NCHW rows are padded to a multiple of the SIMD width

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// The channels_last tiling of the forward and the backward: one task per (n, block of kBlockC
// channels, block of block_h rows). The blocks are fixed (not derived from the thread count), so
// the backward's per-tile partial sums are reduced in the same order on any machine. The forward's
// buffered path holds a tile's rows, so its tiles stay short; the backward keeps three rows at a
// time but recomputes dl on two halo rows per tile, so it takes taller tiles.
struct NhwcTiling {
  static constexpr int64_t kBlockC = 128;  // long contiguous runs of x and y per pixel
  static constexpr int64_t kForwardBlockH = 8, kBackwardBlockH = 16;
  int64_t C, H, block_h, nCB, nHB;
  NhwcTiling(int64_t C_, int64_t H_, int64_t block_h_)
      : C(C_), H(H_), block_h(block_h_), nCB((C_ + kBlockC - 1) / kBlockC), nHB((H_ + block_h_ - 1) / block_h_) {}
  int64_t tasks(int64_t N) const { return N * nCB * nHB; }

  struct Tile {
    int64_t n, hbi, c0, cb, Cp, h0, h1;  // channels [c0, c0 + cb) padded to Cp, rows [h0, h1)
  };
  Tile tile(int64_t task) const {
    Tile t;
    t.n = task / (nCB * nHB);
    t.hbi = task % nHB;
    t.c0 = ((task / nHB) % nCB) * kBlockC;
    t.cb = std::min(kBlockC, C - t.c0);
    t.Cp = round_up(t.cb, kLanes);
    t.h0 = t.hbi * block_h;
    t.h1 = std::min(H, t.h0 + block_h);
    return t;
  }
};

template <typename T>
const RowKernels<T>& row_kernels();
template <>
inline const RowKernels<float>& row_kernels<float>() { return row_kernels_float(); }
template <>
inline const RowKernels<double>& row_kernels<double>() { return row_kernels_double(); }

// dst[w * dst_step] = src[w * stride] for w < W, converted to T.
template <typename T, typename scalar_t>
inline void gather(const scalar_t* src, int64_t stride, int64_t W, T* dst, int64_t dst_step) {
  if (stride == 1 && dst_step == 1) {
    for (int64_t w = 0; w < W; ++w) dst[w] = static_cast<T>(src[w]);
  } else {
    for (int64_t w = 0; w < W; ++w) dst[w * dst_step] = static_cast<T>(src[w * stride]);
  }
}

template <typename T, typename scalar_t>
inline void scatter(const T* src, int64_t src_step, int64_t W, scalar_t* dst, int64_t stride) {
  if (stride == 1 && src_step == 1) {
    for (int64_t w = 0; w < W; ++w) dst[w] = static_cast<scalar_t>(src[w]);
  } else {
    for (int64_t w = 0; w < W; ++w) dst[w * stride] = static_cast<scalar_t>(src[w * src_step]);
  }
}

// A 2-D strided view of one (n, c) plane or of one n (NHWC blocks index channels too).
template <typename scalar_t>
struct Strided4 {
  scalar_t* data;
  int64_t sN, sC, sH, sW;
  scalar_t* at(int64_t n, int64_t c, int64_t h, int64_t w) const {
    return data + n * sN + c * sC + h * sH + w * sW;
  }
};

template <typename scalar_t>
Strided4<scalar_t> strided4(const at::Tensor& t) {
  return {const_cast<scalar_t*>(t.const_data_ptr<scalar_t>()), t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

// NCHW: padded row of plane (n, c), or zeros when h is outside [0, H). Pads stay zero because
// only elements [1, W] are ever written.
template <typename T, typename scalar_t>
inline void load_plane_row(const Strided4<scalar_t>& x, int64_t n, int64_t c, int64_t h, int64_t H, int64_t W,
                           T* dst) {
  if (h < 0 || h >= H) {
    std::fill(dst + 1, dst + 1 + W, T(0));
  } else {
    gather(x.at(n, c, h, 0), x.sW, W, dst + 1, 1);
  }
}

// NHWC: padded row (n, h) of channels [c0, c0 + cb) into a (W + 2) x Cp buffer. Channels
// [cb, Cp) and pixels -1, W stay zero (never written).
template <typename T, typename scalar_t>
inline void load_block_row(const Strided4<scalar_t>& x, int64_t n, int64_t c0, int64_t cb, int64_t Cp, int64_t h,
                           int64_t H, int64_t W, T* dst) {
  T* row = dst + Cp;
  if (h < 0 || h >= H) {
    for (int64_t w = 0; w < W; ++w) std::fill(row + w * Cp, row + w * Cp + cb, T(0));
    return;
  }
  // Channels-last tiles read short runs (cb channels) at a stride of C: the hardware prefetcher
  // does not follow them, so ask for the next row of the tile while this one is copied.
  const bool prefetch_next = h + 1 < H && x.sC == 1;
  for (int64_t w = 0; w < W; ++w) {
    if (prefetch_next) {
      const char* next = reinterpret_cast<const char*>(x.at(n, c0, h + 1, w));
      for (int64_t b = 0; b < cb * static_cast<int64_t>(sizeof(scalar_t)); b += 64) __builtin_prefetch(next + b);
    }
    gather(x.at(n, c0, h, w), x.sC, cb, row + w * Cp, 1);
  }
}

// Unpadded NHWC row (W x Cp) of channels [c0, c0 + cb); channels beyond cb stay zero.
template <typename T, typename scalar_t>
inline void load_block_row_unpadded(const Strided4<scalar_t>& x, int64_t n, int64_t c0, int64_t cb, int64_t Cp,
                                    int64_t h, int64_t W, T* dst) {
  for (int64_t w = 0; w < W; ++w) gather(x.at(n, c0, h, w), x.sC, cb, dst + w * Cp, 1);
}

template <typename T, typename scalar_t>
inline void store_block_row(const T* src, int64_t cb, int64_t Cp, const Strided4<scalar_t>& y, int64_t n,
                            int64_t c0, int64_t h, int64_t W) {
  for (int64_t w = 0; w < W; ++w) scatter(src + w * Cp, 1, cb, y.at(n, c0, h, w), y.sC);
}

// Per-channel parameters in the compute type, gathered once per call.
template <typename T>
struct ChannelParams {
  const T* w;      // (C, 9)
  const T* bias;   // (C)
  const T* gate;   // (6, C)
  const T* gamma;  // (C)
  const T* g;      // (N, C)
  int64_t C;

  PlaneCoef<T> plane(int64_t n, int64_t c) const {
    PlaneCoef<T> p;
    for (int k = 0; k < 9; ++k) {
      p.w[k] = w[c * 9 + k];
      p.w_rot[k] = w[c * 9 + 8 - k];
    }
    p.bias = bias[c];
    p.k = make_gate_coef(gate[c], gate[C + c], gate[2 * C + c], gate[3 * C + c], gate[4 * C + c], gate[5 * C + c],
                         gamma[c], g[n * C + c]);
    return p;
  }
};

// The arrays behind a BlockCoef for channels [c0, c0 + cb) of sample n, zero beyond cb.
template <typename T>
struct BlockCoefStorage {
  std::vector<T> data;
  BlockCoef<T> coef;

  BlockCoefStorage(const ChannelParams<T>& P, int64_t n, int64_t c0, int64_t cb, int64_t Cp)
      : data(static_cast<size_t>(Cp) * 25, T(0)) {
    T* w = data.data();
    T* w_rot = w + 9 * Cp;
    T* rest = w + 18 * Cp;  // bias, a_l, kl, a_g, kg, gamma, g
    for (int64_t cc = 0; cc < cb; ++cc) {
      const PlaneCoef<T> p = P.plane(n, c0 + cc);
      for (int k = 0; k < 9; ++k) {
        w[k * Cp + cc] = p.w[k];
        w_rot[k * Cp + cc] = p.w_rot[k];
      }
      const T vals[7] = {p.bias, p.k.a_l, p.k.kl, p.k.a_g, p.k.kg, p.k.gamma, p.k.g};
      for (int s = 0; s < 7; ++s) rest[s * Cp + cc] = vals[s];
    }
    coef = BlockCoef<T>{w, w_rot, rest, rest + Cp, rest + 2 * Cp, rest + 3 * Cp, rest + 4 * Cp, rest + 5 * Cp,
                        rest + 6 * Cp};
  }
};

}  // namespace cpu
}  // namespace lgf
