// Forward kernels of the fused LGF op: one pass over x, y written once, no intermediate tensor.
// A block copies its tile plus a 1-pixel halo into shared memory (tile_loader.cuh) while its
// parameter loads are in flight, waits once, and computes from shared memory.
//   forward_nchw_kernel: a tile of one (n, c) plane; each thread computes kNchwRows rows of V
//     consecutive outputs (16 bytes of y), rolling three row windows down (stencil.cuh). Also
//     used for x that is neither NCHW- nor channels_last-contiguous (element-wise copies).
//   forward_nhwc_kernel: a 16 x 16 pixel tile of CB channels; a thread owns one channel and rolls
//     a 3 x 3 window along row segments, so a warp writes consecutive channels of a pixel.
// Each comes as two kernels: *_kernel, the 16-byte path (x contiguous in the layout, rows /
// pixels of whole vectors), and *_strided_kernel, element-wise copies and stores through any
// strides; the wrapper picks one per launch (can_copy_vectors).
#pragma once

#include "cuda/channel_params.cuh"
#include "cuda/stencil.cuh"
#include "cuda/tile_loader.cuh"

namespace lgf {
namespace cuda {

template <bool kVec, typename scalar_t, typename T>
__device__ __forceinline__ void forward_nchw(const TileSource<scalar_t>& x, scalar_t* __restrict__ y,
                                             const ParamView<scalar_t>& p, const NchwPlan& g, int H, int W) {
  constexpr int V = kVecElems<scalar_t>, R = kNchwRows;
  scalar_t* tile = dynamic_smem<scalar_t>();  // th + 2 rows (image rows h0 - 1 .. h0 + th) of g.sw
  const int tid = threadIdx.x;
  const TileItem it = g.grid.decode(blockIdx.x);
  const int h0 = it.strip * g.th, w0 = it.tw * g.tw;
  const ChannelParams<T> cp = channel_params<T>(p, it.n, it.c);
  const Region<scalar_t> reg{x.at(it.n, it.c, h0, w0), tile, g.sw, -1, -h0, H - h0,
                             static_cast<int>(x.sh), static_cast<int>(x.sw)};
  copy_region<kVec>(reg, nchw_load_column(x, g, tid, g.th + 2, w0, W), g.rp);
  async_copy_wait_all();
  __syncthreads();

  const int tr = static_cast<int>(g.div_twv.div(tid)), tq = tid - tr * g.twv;
  if (tr >= g.tr) return;
  const int w = w0 + tq * V, nv = std::min(V, W - w);
  if (nv <= 0) return;
  scalar_t* yt = y + ((int64_t(it.n) * p.C + it.c) * H + h0) * W + w0;
  const scalar_t* s = tile + tr * R * g.sw + (tq + 1) * V;  // rows from h0 + tr * R - 1, this thread's vector
  T win[3][V + 2];
  load_row_window<V>(s, win[0]);
  load_row_window<V>(s + g.sw, win[1]);
#pragma unroll
  for (int i = 0; i < R; ++i) {
    load_row_window<V>(s + (i + 2) * g.sw, win[(i + 2) % 3]);
    const int r = tr * R + i;
    if (h0 + r < H) {
      T out[V];
#pragma unroll
      for (int j = 0; j < V; ++j) {
        T px[9];
        gather3x3<V>(win[i % 3], win[(i + 1) % 3], win[(i + 2) % 3], j, px);
        out[j] = forward_point(px[4], conv3x3(cp.f, cp.bias, px), cp.k);
      }
      store_outputs<kVec>(yt + r * W + tq * V, out, nv);
    }
  }
}

template <bool kVec, typename scalar_t, typename T>
__device__ __forceinline__ void forward_nhwc(const TileSource<scalar_t>& x, scalar_t* __restrict__ y,
                                             const ParamView<scalar_t>& p, const NhwcPlan& g, int H, int W) {
  constexpr int CB = NhwcTile<scalar_t>::kForwardCB, TH = NhwcTile<scalar_t>::kTH, TW = NhwcTile<scalar_t>::kTW;
  constexpr int PW = TW + 2, G = kThreads / CB;        // pixels per shared row; thread groups (one per pixel)
  constexpr int SEGS = G > TH ? G / TH : 1, K = TW / SEGS;  // a group's row segments: K pixels each
  static_assert(TH * SEGS % G == 0 && TW % SEGS == 0, "segments must split evenly over the groups");
  scalar_t* tile = dynamic_smem<scalar_t>();  // [TH + 2][PW][CB]: image rows h0 - 1 .., columns w0 - 1 ..
  const int tid = threadIdx.x, cx = tid % CB, grp = tid / CB, C = p.C;
  const TileItem it = g.grid.decode(blockIdx.x);
  const int h0 = it.strip * TH, w0 = it.tw * TW, c0 = it.c * CB, c = c0 + cx;
  const ChannelParams<T> cp = channel_params<T>(p, it.n, std::min(c, C - 1));
  const Region<scalar_t> reg{x.at(it.n, c0, h0, w0), tile, PW * CB, -1, -h0, H - h0,
                             static_cast<int>(x.sh), static_cast<int>(x.sc)};
  copy_region<kVec>(reg, nhwc_load_column<CB, PW, 1, TH + 2>(x, tid, w0, W, c0, C),
                    nhwc_rows_per_pass<CB, PW, scalar_t>());
  async_copy_wait_all();
  __syncthreads();

  if (c >= C) return;
  scalar_t* yt = y + (int64_t(it.n) * H + h0) * W * C + int64_t(w0) * C + c;
#pragma unroll
  for (int i = 0; i < TH * SEGS / G; ++i) {
    const int u = grp + i * G, r = u / SEGS, q0 = (u % SEGS) * K;
    if (h0 + r >= H) break;
    const int cols_in = W - w0 - q0;
    const scalar_t* s = tile + (r * PW + q0) * CB + cx;  // x[h0 + r - 1, w0 + q0 - 1]
    scalar_t* out = yt + (int64_t(r) * W + q0) * C;
    T win[3][3];                                         // [row][column mod 3]
#pragma unroll
    for (int k = 0; k < K + 2; ++k) {
#pragma unroll
      for (int a = 0; a < 3; ++a) win[a][k % 3] = static_cast<T>(s[(a * PW + k) * CB]);
      if (k < 2) continue;
      const int q = k - 2;  // the output whose window is now complete
      T px[9];
#pragma unroll
      for (int a = 0; a < 3; ++a)
#pragma unroll
        for (int b = 0; b < 3; ++b) px[a * 3 + b] = win[a][(q + b) % 3];
      const T v = forward_point(px[4], conv3x3(cp.f, cp.bias, px), cp.k);
      if (q < cols_in) *out = static_cast<scalar_t>(v);
      out += C;
    }
  }
}

// The kernels: the 16-byte path, and the general one (any strides, element-wise copies).
template <typename scalar_t, typename T>
__global__ void __launch_bounds__(kThreads)
    forward_nchw_kernel(TileSource<scalar_t> x, scalar_t* __restrict__ y, ParamView<scalar_t> p, NchwPlan g, int H,
                        int W) {
  forward_nchw<true, scalar_t, T>(x, y, p, g, H, W);
}

template <typename scalar_t, typename T>
__global__ void __launch_bounds__(kThreads)
    forward_nchw_strided_kernel(TileSource<scalar_t> x, scalar_t* __restrict__ y, ParamView<scalar_t> p, NchwPlan g,
                                int H, int W) {
  forward_nchw<false, scalar_t, T>(x, y, p, g, H, W);
}

template <typename scalar_t, typename T>
__global__ void __launch_bounds__(kThreads)
    forward_nhwc_kernel(TileSource<scalar_t> x, scalar_t* __restrict__ y, ParamView<scalar_t> p, NhwcPlan g, int H,
                        int W) {
  forward_nhwc<true, scalar_t, T>(x, y, p, g, H, W);
}

template <typename scalar_t, typename T>
__global__ void __launch_bounds__(kThreads)
    forward_nhwc_strided_kernel(TileSource<scalar_t> x, scalar_t* __restrict__ y, ParamView<scalar_t> p, NhwcPlan g,
                                int H, int W) {
  forward_nhwc<false, scalar_t, T>(x, y, p, g, H, W);
}

}  // namespace cuda
}  // namespace lgf
