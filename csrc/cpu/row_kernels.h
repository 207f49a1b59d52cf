// Row kernels of the CPU implementation: the hot loops, on fp32 (or fp64) data.
//
// The forward kernels read x where it lies when it already holds the compute type T with unit
// stride along their vectors (fp32/fp64 NCHW rows, fp32/fp64 channels_last pixels), and masks
// handle the image edges; otherwise the op wrapper (fused_forward_cpu.cpp) converts a block of
// rows into an unpadded T buffer of the same shape first. The backward kernels work on rows that
// fused_backward_cpu.cpp loads into zero-padded T buffers. Three tables exist for float
// (portable, AVX2+FMA, AVX-512, picked at run time); double always uses the portable one.
//
// Backward buffer layouts
//   NCHW (one (n, c) plane at a time): a padded row holds Wp + 2 values, Wp = W rounded up;
//     element [1 + w] is column w, elements [0] and [W + 1, Wp + 1] are zero.
//     Wp is a multiple of 16 (the widest vector). Unpadded rows (dy, dx) hold Wp values;
//     dy must be zero beyond W.
//   NHWC (one (n, h) row of a block of Cp channels, Cp a multiple of 16): a padded row holds
//     (W + 2) * Cp values, pixel w at [(1 + w) * Cp]; pixels -1 and W and channels beyond the
//     block's real channels are zero. Unpadded rows hold W * Cp values.
//   Rows r0, r1, r2 are the input rows h-1, h, h+1 (all-zero outside the image).
#pragma once

#include <cstdint>

#include "lgf_math.h"

namespace lgf {
namespace cpu {

// Per-channel constants of the NCHW kernels: one (n, c) plane.
template <typename T>
struct PlaneCoef {
  T w[9];      // depthwise filter, row-major (i * 3 + j)
  T w_rot[9];  // the same filter rotated 180 degrees (dx is a convolution of dl with it)
  T bias;
  GateCoef<T> k;
};

// Per-channel constants of the NHWC kernels: arrays over a block of Cp channels.
template <typename T>
struct BlockCoef {
  const T* w;      // [9][Cp]
  const T* w_rot;  // [9][Cp]
  const T* bias;   // [Cp]
  const T* a_l;    // [Cp] each, see GateCoef
  const T* kl;
  const T* a_g;
  const T* kg;
  const T* gamma;
  const T* g;
};

// Rows of a channels_last block as the NHWC forward reads them in place: channel c of pixel w of
// row r (0 <= r < rows) at x + r * xs + w * xw + c. above / below are the rows just outside the
// block with the same pixel stride: rows of the tensor, or zeros at the image border.
template <typename T>
struct NhwcRows {
  const T* x;
  int64_t xs, xw;
  const T* above;
  const T* below;
};

template <typename T>
struct RowKernels {
  // y = forward(x) for `rows` rows of one plane. Input row r (W contiguous values) is at x + r * xs;
  // above / below are the rows just outside the block (zeros at the image border). Output row r
  // (exactly W values written) goes to y + r * ys. next_x / next_y are the plane the caller works
  // on next, in the same arrays with the same strides (or x / y again if none): on row r the
  // kernel prefetches row r of both, a plane ahead of use, which the hardware prefetchers alone
  // do not reach in time.
  void (*nchw_forward)(const T* x, int64_t xs, int64_t rows, const T* above, const T* below, int64_t W,
                       const PlaneCoef<T>& p, T* y, int64_t ys, const T* next_x, T* next_y);
  // dl (padded) of columns [0, W) of one row, left 0 beyond; adds the row's partial sums of
  // those columns into acc[NUM_SLOTS].
  void (*nchw_backward_dl)(const T* r0, const T* r1, const T* r2, const T* dy, const PlaneCoef<T>& p, T* dl,
                           T* acc, int64_t W);
  // dx = dy + rotated-filter convolution of the padded dl rows h-1, h, h+1.
  void (*nchw_backward_dx)(const T* d0, const T* d1, const T* d2, const T* dy, const PlaneCoef<T>& p, T* dx,
                           int64_t Wp);
  // y = forward(x) for channels [0, cb) of `rows` rows of a channels_last block (the coefficient
  // arrays of p hold Cp >= cb channels, zero beyond cb), read in place: see NhwcRows.
  void (*nhwc_forward)(const NhwcRows<T>& x, int64_t rows, int64_t W, int64_t cb, int64_t Cp, const BlockCoef<T>& p,
                       T* y, int64_t ys, int64_t yw);
  // acc is [NUM_SLOTS][Cp].
  void (*nhwc_backward_dl)(const T* r0, const T* r1, const T* r2, const T* dy, const BlockCoef<T>& p, T* dl,
                           T* acc, int64_t W, int64_t Cp);
  void (*nhwc_backward_dx)(const T* d0, const T* d1, const T* d2, const T* dy, const BlockCoef<T>& p, T* dx,
                           int64_t W, int64_t Cp);
};

// Kernel tables. row_kernels_float() returns the widest table the CPU supports (AVX-512,
// AVX2+FMA, portable); the environment variable LGF_CPU_SIMD=portable|avx2|avx512 caps it.
const RowKernels<float>& row_kernels_float();
const RowKernels<double>& row_kernels_double();
// Name of the table row_kernels_float() picks now: "avx512", "avx2" or "portable".
const char* simd_name_float();

// Provided by row_kernels_avx2.cpp / row_kernels_avx512.cpp, each compiled for its instruction
// set; only called after a CPU check.
const RowKernels<float>& row_kernels_float_avx2();
const RowKernels<float>& row_kernels_float_avx512();

}  // namespace cpu
}  // namespace lgf
