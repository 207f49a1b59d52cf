// Forward kernels of the fused LGF op: one pass over x. Each block loads its output tile plus a
// 1-pixel halo into shared memory (converted to the compute type T), keeps the 9 filter taps and
// the gate coefficients of its channel in registers and writes y once.
//   forward_nchw_kernel: tiles of one (n, c) plane; a warp reads/writes 32 consecutive columns.
//     Used for NCHW-contiguous x and for any other strides that are not channels_last.
//   forward_nhwc_kernel: tiles of (rows, columns, block of channels); a warp reads/writes
//     consecutive channels of a pixel (contiguous in channels_last).
// Both read x and write y through element strides, so either works for any layout; the
// layout only decides which one coalesces.
#pragma once

#include "cuda/lgf_tile.cuh"

namespace lgf {
namespace cuda {

template <typename scalar_t, typename T>
__global__ void __launch_bounds__(kThreads)
    forward_nchw_kernel(const scalar_t* __restrict__ x, Strides4 sx, scalar_t* __restrict__ y, Strides4 sy,
                        DevParams<T> p, int64_t H, int64_t W, LaunchPlan plan) {
  constexpr int TH = kNchwTH, TW = kNchwTW, SH = TH + 2, SW = TW + 2, ROWS = kThreads / TW;
  __shared__ T tile[SH * SW];  // rows h0-1 .. h0+TH, columns w0-1 .. w0+TW
  const int tid = threadIdx.x, tx = tid % TW, ty = tid / TW;
  for (int64_t item = blockIdx.x; item < plan.items; item += gridDim.x) {
    const int64_t tw = item % plan.tiles_w, th = (item / plan.tiles_w) % plan.tiles_h;
    const int64_t plane = item / plan.tiles_w / plan.tiles_h;
    const int64_t n = plane / p.C, c = plane % p.C;
    const int64_t h0 = th * TH, w0 = tw * TW;
    const scalar_t* xp = x + n * sx.n + c * sx.c;
    __syncthreads();  // the previous item's readers are done with the tile
    for (int i = tid; i < SH * SW; i += kThreads) {
      tile[i] = load_or_zero<T>(xp, sx, h0 - 1 + i / SW, w0 - 1 + i % SW, H, W);
    }
    __syncthreads();
    T f[9];
    p.filter(c, f);
    const T bias = p.bias[c];
    const GateCoef<T> k = p.coef(n, c);
    scalar_t* yp = y + n * sy.n + c * sy.c;
    const int64_t w = w0 + tx;
    for (int oy = ty; oy < TH; oy += ROWS) {
      const int64_t h = h0 + oy;
      if (h < H && w < W) {
        const T* win = tile + oy * SW + tx;  // x[h-1, w-1]
        const T l = stencil3x3(f, win, SW, 1) + bias;
        yp[h * sy.h + w * sy.w] = static_cast<scalar_t>(forward_point(win[SW + 1], l, k));
      }
    }
  }
}

template <typename scalar_t, typename T>
__global__ void __launch_bounds__(kThreads)
    forward_nhwc_kernel(const scalar_t* __restrict__ x, Strides4 sx, scalar_t* __restrict__ y, Strides4 sy,
                        DevParams<T> p, int64_t H, int64_t W, LaunchPlan plan) {
  constexpr int CB = NhwcBlock<T>::kForwardCB, TH = kNhwcTH, TW = kNhwcTW, SH = TH + 2, SW = TW + 2;
  constexpr int PIX = kThreads / CB;  // pixels processed at once
  static_assert(kThreads % CB == 0, "NHWC thread layout");
  __shared__ T tile[SH * SW * CB];  // [row][column][channel], halo of 1 pixel
  const int tid = threadIdx.x, cx = tid % CB, py = tid / CB;
  const int64_t C = p.C;
  for (int64_t item = blockIdx.x; item < plan.items; item += gridDim.x) {
    const int64_t tw = item % plan.tiles_w, th = (item / plan.tiles_w) % plan.tiles_h;
    const int64_t cb = (item / plan.tiles_w / plan.tiles_h) % plan.c_blocks;
    const int64_t n = item / plan.tiles_w / plan.tiles_h / plan.c_blocks;
    const int64_t h0 = th * TH, w0 = tw * TW, c0 = cb * CB;
    const scalar_t* xn = x + n * sx.n;
    __syncthreads();
    for (int i = tid; i < SH * SW * CB; i += kThreads) {
      const int pix = i / CB, cc = i % CB;
      const int64_t c = c0 + cc;
      tile[i] = c < C ? load_or_zero<T>(xn + c * sx.c, sx, h0 - 1 + pix / SW, w0 - 1 + pix % SW, H, W) : T(0);
    }
    __syncthreads();
    const int64_t c = c0 + cx;
    if (c < C) {
      T f[9];
      p.filter(c, f);
      const T bias = p.bias[c];
      const GateCoef<T> k = p.coef(n, c);
      scalar_t* yp = y + n * sy.n + c * sy.c;
      for (int pix = py; pix < TH * TW; pix += PIX) {
        const int oy = pix / TW, ox = pix % TW;
        const int64_t h = h0 + oy, w = w0 + ox;
        if (h < H && w < W) {
          const T* win = tile + (oy * SW + ox) * CB + cx;
          const T l = stencil3x3(f, win, SW * CB, CB) + bias;
          yp[h * sy.h + w * sy.w] = static_cast<scalar_t>(forward_point(win[(SW + 1) * CB], l, k));
        }
      }
    }
  }
}

}  // namespace cuda
}  // namespace lgf
