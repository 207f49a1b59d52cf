// Backward kernels of the fused LGF op. Nothing is saved from the forward: a block loads x for
// its tile with a 2-pixel halo, recomputes l and dl on the tile plus a 1-pixel halo (dx at the
// tile border needs dl of the neighbouring pixels), writes dx = dy + the rotated-filter
// convolution of dl, and accumulates the PartialSlot sums (lgf_math.h) of the pixels it owns in
// registers. A block walks a fixed strip of tile rows, then reduces its sums in a fixed order
// (block_reduce_slots, no atomics) into the workspace
//   ws[((n * C + c) * NUM_SLOTS + slot) * plan.ws_tiles() + strip * plan.tiles_w + tw]
// in the compute type; every entry is written by exactly one block. x, dy and dx are addressed
// through element strides (a stride-0 dy is read as is).
#pragma once

#include "cuda/lgf_tile.cuh"

namespace lgf {
namespace cuda {

// One block: tile rows [strip * kNchwStrip, ...) x tile column tw of plane (n, c).
template <typename scalar_t, typename T>
__global__ void __launch_bounds__(kThreads, kNchwBackwardMinBlocks<T>)
    backward_nchw_kernel(const scalar_t* __restrict__ dy, Strides4 sdy, const scalar_t* __restrict__ x, Strides4 sx,
                         scalar_t* __restrict__ dx, Strides4 sdx, DevParams<T> p, T* __restrict__ ws, int64_t H,
                         int64_t W, LaunchPlan plan) {
  constexpr int TH = kNchwTH, TW = kNchwTW, ROWS = kThreads / TW;
  constexpr int XH = TH + 4, XW = TW + 4;  // x: rows h0-2 .. h0+TH+1, columns w0-2 .. w0+TW+1
  constexpr int LH = TH + 2, LW = TW + 2;  // dl: rows h0-1 .. h0+TH, columns w0-1 .. w0+TW
  __shared__ T xs[XH * XW];                // also the reduction buffer once the strip is done
  __shared__ T dls[LH * LW];
  __shared__ T dys[TH * TW];
  static_assert(XH * XW >= kWarps * NUM_SLOTS, "reduction buffer");
  const int tid = threadIdx.x, tx = tid % TW, ty = tid / TW;
  const int64_t ws_tiles = plan.ws_tiles();
  for (int64_t item = blockIdx.x; item < plan.items; item += gridDim.x) {
    const int64_t tw = item % plan.tiles_w, strip = (item / plan.tiles_w) % plan.strips;
    const int64_t plane = item / plan.tiles_w / plan.strips;
    const int64_t n = plane / p.C, c = plane % p.C;
    const scalar_t* xp = x + n * sx.n + c * sx.c;
    const scalar_t* dyp = dy + n * sdy.n + c * sdy.c;
    scalar_t* dxp = dx + n * sdx.n + c * sdx.c;
    T f[9];
    p.filter(c, f);
    const T bias = p.bias[c];
    const GateCoef<T> k = p.coef(n, c);
    T acc[NUM_SLOTS];
#pragma unroll
    for (int s = 0; s < NUM_SLOTS; ++s) acc[s] = T(0);
    const int64_t th_end = (strip + 1) * kNchwStrip < plan.tiles_h ? (strip + 1) * kNchwStrip : plan.tiles_h;
    for (int64_t th = strip * kNchwStrip; th < th_end; ++th) {
      const int64_t h0 = th * TH, w0 = tw * TW;
      __syncthreads();  // previous readers of xs / dls / dys are done
      for (int i = tid; i < XH * XW; i += kThreads) {
        xs[i] = load_or_zero<T>(xp, sx, h0 - 2 + i / XW, w0 - 2 + i % XW, H, W);
      }
      __syncthreads();
      for (int i = tid; i < LH * LW; i += kThreads) {
        const int r = i / LW, q = i % LW;
        const int64_t h = h0 - 1 + r, w = w0 - 1 + q;
        T dl = T(0);  // dl is zero outside the image
        if (h >= 0 && h < H && w >= 0 && w < W) {
          const T* win = xs + r * XW + q;  // x[h-1, w-1]
          const T l = stencil3x3(f, win, XW, 1) + bias;
          const T d = static_cast<T>(dyp[h * sdy.h + w * sdy.w]);
          const PointGrad<T> pg = backward_point(l, d, k);
          dl = pg.dl;
          if (r >= 1 && r <= TH && q >= 1 && q <= TW) {  // a pixel of this tile (not the halo)
            dys[(r - 1) * TW + (q - 1)] = d;
            add_slots(acc, pg, l, d, win, XW, 1);
          }
        }
        dls[i] = dl;
      }
      __syncthreads();
      const int64_t w = w0 + tx;
      for (int oy = ty; oy < TH; oy += ROWS) {
        const int64_t h = h0 + oy;
        if (h < H && w < W) {
          const T v = dys[oy * TW + tx] + stencil3x3_rot(f, dls + oy * LW + tx, LW, 1);
          dxp[h * sdx.h + w * sdx.w] = static_cast<scalar_t>(v);
        }
      }
    }
    // xs is free: its last readers finished before the __syncthreads preceding the dx loop.
    T* out = ws + plane * NUM_SLOTS * ws_tiles + strip * plan.tiles_w + tw;
    block_reduce_slots<1>(acc, xs, [&](int s, int, T v) { out[s * ws_tiles] = v; });
  }
}

// One block: tile rows [strip * kNhwcStrip, ...) x tile column tw of channels [c0, c0 + CB) of
// sample n.
template <typename scalar_t, typename T>
__global__ void __launch_bounds__(kThreads, kNhwcBackwardMinBlocks<T>)
    backward_nhwc_kernel(const scalar_t* __restrict__ dy, Strides4 sdy, const scalar_t* __restrict__ x, Strides4 sx,
                         scalar_t* __restrict__ dx, Strides4 sdx, DevParams<T> p, T* __restrict__ ws, int64_t H,
                         int64_t W, LaunchPlan plan) {
  constexpr int CB = NhwcBlock<T>::kBackwardCB, TH = kNhwcTH, TW = kNhwcTW;
  constexpr int PIX = kThreads / CB;
  constexpr int XH = TH + 4, XW = TW + 4, LH = TH + 2, LW = TW + 2;
  static_assert(kThreads % CB == 0 && 32 % CB == 0, "NHWC thread layout");
  __shared__ T xs[XH * XW * CB];  // [row][column][channel]; also the reduction buffer
  __shared__ T dls[LH * LW * CB];
  __shared__ T dys[TH * TW * CB];
  static_assert(XH * XW * CB >= kWarps * NUM_SLOTS * CB, "reduction buffer");
  const int tid = threadIdx.x, cx = tid % CB, py = tid / CB;
  const int64_t C = p.C, ws_tiles = plan.ws_tiles();
  for (int64_t item = blockIdx.x; item < plan.items; item += gridDim.x) {
    const int64_t tw = item % plan.tiles_w, strip = (item / plan.tiles_w) % plan.strips;
    const int64_t cb = (item / plan.tiles_w / plan.strips) % plan.c_blocks;
    const int64_t n = item / plan.tiles_w / plan.strips / plan.c_blocks;
    const int64_t c0 = cb * CB, c = c0 + cx;
    const bool active = c < C;  // threads of missing channels only help load and reduce
    const int64_t cs = active ? c : 0;  // keeps the pointers below inside the tensors
    const scalar_t* xn = x + n * sx.n;
    const scalar_t* dyp = dy + n * sdy.n + cs * sdy.c;
    scalar_t* dxp = dx + n * sdx.n + cs * sdx.c;
    T f[9];
    p.filter(cs, f);
    const T bias = p.bias[cs];
    const GateCoef<T> k = p.coef(n, cs);
    T acc[NUM_SLOTS];
#pragma unroll
    for (int s = 0; s < NUM_SLOTS; ++s) acc[s] = T(0);
    const int64_t th_end = (strip + 1) * kNhwcStrip < plan.tiles_h ? (strip + 1) * kNhwcStrip : plan.tiles_h;
    for (int64_t th = strip * kNhwcStrip; th < th_end; ++th) {
      const int64_t h0 = th * TH, w0 = tw * TW;
      __syncthreads();
      for (int i = tid; i < XH * XW * CB; i += kThreads) {
        const int pix = i / CB, cc = i % CB;
        const int64_t ci = c0 + cc;
        xs[i] = ci < C ? load_or_zero<T>(xn + ci * sx.c, sx, h0 - 2 + pix / XW, w0 - 2 + pix % XW, H, W) : T(0);
      }
      __syncthreads();
      for (int pix = py; pix < LH * LW; pix += PIX) {
        const int r = pix / LW, q = pix % LW;
        const int64_t h = h0 - 1 + r, w = w0 - 1 + q;
        T dl = T(0);
        if (active && h >= 0 && h < H && w >= 0 && w < W) {
          const T* win = xs + (r * XW + q) * CB + cx;
          const T l = stencil3x3(f, win, XW * CB, CB) + bias;
          const T d = static_cast<T>(dyp[h * sdy.h + w * sdy.w]);
          const PointGrad<T> pg = backward_point(l, d, k);
          dl = pg.dl;
          if (r >= 1 && r <= TH && q >= 1 && q <= TW) {
            dys[((r - 1) * TW + (q - 1)) * CB + cx] = d;
            add_slots(acc, pg, l, d, win, XW * CB, CB);
          }
        }
        dls[pix * CB + cx] = dl;
      }
      __syncthreads();
      if (active) {
        for (int pix = py; pix < TH * TW; pix += PIX) {
          const int oy = pix / TW, ox = pix % TW;
          const int64_t h = h0 + oy, w = w0 + ox;
          if (h < H && w < W) {
            const T v = dys[pix * CB + cx] + stencil3x3_rot(f, dls + (oy * LW + ox) * CB + cx, LW * CB, CB);
            dxp[h * sdx.h + w * sdx.w] = static_cast<scalar_t>(v);
          }
        }
      }
    }
    T* out = ws + strip * plan.tiles_w + tw;
    block_reduce_slots<CB>(acc, xs, [&](int s, int ch, T v) {
      const int64_t cc = c0 + ch;
      if (cc < C) out[((n * C + cc) * NUM_SLOTS + s) * ws_tiles] = v;
    });
  }
}

}  // namespace cuda
}  // namespace lgf
