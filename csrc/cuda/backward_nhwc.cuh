// Backward kernel of the fused LGF op for channels_last x: the same three phases as the NCHW
// kernel (backward_nchw.cuh) on a 16 x 16 pixel tile of CB channels, one channel per thread.
// Shared tiles are [row][pixel][channel]: x with a 2-pixel halo, dy and dl with a 1-pixel halo.
// A group of CB threads (one per channel) rolls a 3 x 3 window along row segments: first over
// the dl tile (rows and columns -1 .. 16), then over the output tile for dx. The workspace
// layout is the NCHW kernel's. kVec as in forward_kernels.cuh (for x and dy both).
#pragma once

#include "cuda/channel_params.cuh"
#include "cuda/slot_sums.cuh"
#include "cuda/stencil.cuh"
#include "cuda/tile_loader.cuh"

namespace lgf {
namespace cuda {

template <typename scalar_t, typename T>
struct NhwcBackwardTile {
  static constexpr int CB = NhwcTile<scalar_t>::kBackwardCB, TH = NhwcTile<scalar_t>::kTH,
                       TW = NhwcTile<scalar_t>::kTW;
  static constexpr int XW = TW + 4, LW = TW + 2, G = kThreads / CB;  // x / dl pixels per row; groups
  const scalar_t* xs;  // [TH + 4][XW][CB]: image rows h0 - 2 .., columns w0 - 2 ..
  const scalar_t* dys;  // [TH + 2][LW][CB]: image rows h0 - 1 .., columns w0 - 1 ..
  T* dls;               // like dys
  int h0, w0, H, W;
};

// dl on the (TH + 2) x LW dl tile: dl (rr, qq) is image pixel (h0 - 1 + rr, w0 - 1 + qq), its x
// window is xs rows rr .. rr + 2, columns qq .. qq + 2. Segments of K pixels per group.
template <typename scalar_t, typename T>
__device__ __forceinline__ void nhwc_dl_phase(const NhwcBackwardTile<scalar_t, T>& s, int grp, int cx,
                                              const ChannelParams<T>& cp, T (&acc)[NUM_SLOTS]) {
  using Tile = NhwcBackwardTile<scalar_t, T>;
  constexpr int CB = Tile::CB, TH = Tile::TH, TW = Tile::TW, XW = Tile::XW, LW = Tile::LW, G = Tile::G;
  constexpr int SEGS = (G + TH + 1) / (TH + 2), K = LW / SEGS;
  static_assert(LW % SEGS == 0, "dl segments must split a row evenly");
  for (int u = grp; u < (TH + 2) * SEGS; u += G) {
    const int rr = u / SEGS, q0 = (u % SEGS) * K;
    T* dl = s.dls + (rr * LW + q0) * CB + cx;
    if (static_cast<unsigned>(s.h0 - 1 + rr) >= static_cast<unsigned>(s.H)) {
#pragma unroll
      for (int k = 0; k < K; ++k) dl[k * CB] = T(0);
      continue;
    }
    const bool own_row = rr >= 1 && rr <= TH;
    const scalar_t* x = s.xs + (rr * XW + q0) * CB + cx;
    const scalar_t* d = s.dys + (rr * LW + q0) * CB + cx;
    T win[3][3];  // [row][column mod 3]
#pragma unroll
    for (int k = 0; k < K + 2; ++k) {
#pragma unroll
      for (int a = 0; a < 3; ++a) win[a][k % 3] = static_cast<T>(x[(a * XW + k) * CB]);
      if (k < 2) continue;
      const int q = k - 2, qq = q0 + q;  // the dl column whose window is now complete
      T px[9];
#pragma unroll
      for (int a = 0; a < 3; ++a)
#pragma unroll
        for (int b = 0; b < 3; ++b) px[a * 3 + b] = win[a][(q + b) % 3];
      const T dyv = static_cast<T>(d[q * CB]), l = conv3x3(cp.f, cp.bias, px);
      const PointGrad<T> pg = backward_point(l, dyv, cp.k);
      const bool in = static_cast<unsigned>(s.w0 - 1 + qq) < static_cast<unsigned>(s.W);
      dl[q * CB] = in ? pg.dl : T(0);
      if (in && own_row && qq >= 1 && qq <= TW) add_slots(acc, pg, l, dyv, px);
    }
  }
}

// dx on the TH x TW output tile: pixel (r, q) <- dl rows r .. r + 2, columns q .. q + 2, dy (r + 1, q + 1).
template <typename scalar_t, typename T>
__device__ __forceinline__ void nhwc_dx_phase(const NhwcBackwardTile<scalar_t, T>& s, scalar_t* dxt, int C,
                                              int grp, int cx, const ChannelParams<T>& cp) {
  using Tile = NhwcBackwardTile<scalar_t, T>;
  constexpr int CB = Tile::CB, TH = Tile::TH, TW = Tile::TW, LW = Tile::LW, G = Tile::G;
  constexpr int SEGS = (G + TH - 1) / TH, K = TW / SEGS;
  static_assert(TW % SEGS == 0, "dx segments must split a row evenly");
  for (int u = grp; u < TH * SEGS; u += G) {
    const int r = u / SEGS, q0 = (u % SEGS) * K;
    if (s.h0 + r >= s.H) break;
    const T* dl = s.dls + (r * LW + q0) * CB + cx;
    const scalar_t* d = s.dys + ((r + 1) * LW + q0 + 1) * CB + cx;
    T win[3][3];
#pragma unroll
    for (int k = 0; k < K + 2; ++k) {
#pragma unroll
      for (int a = 0; a < 3; ++a) win[a][k % 3] = dl[(a * LW + k) * CB];
      const int q = k - 2;
      if (k < 2 || s.w0 + q0 + q >= s.W) continue;
      T px[9];
#pragma unroll
      for (int a = 0; a < 3; ++a)
#pragma unroll
        for (int b = 0; b < 3; ++b) px[a * 3 + b] = win[a][(q + b) % 3];
      dxt[(r * s.W + q0 + q) * C] = static_cast<scalar_t>(conv3x3_rot(cp.f, static_cast<T>(d[q * CB]), px));
    }
  }
}

template <typename scalar_t, typename T, bool kVec>
__global__ void __launch_bounds__(kThreads, kBackwardMinBlocks<T>)
    backward_nhwc_kernel(TileSource<scalar_t> dy, TileSource<scalar_t> x, scalar_t* __restrict__ dx,
                         ParamView<scalar_t> p, T* __restrict__ ws, NhwcPlan g, int H, int W) {
  using Tile = NhwcBackwardTile<scalar_t, T>;
  constexpr int CB = Tile::CB, TH = Tile::TH, TW = Tile::TW, XW = Tile::XW, LW = Tile::LW;
  scalar_t* xs = dynamic_smem<scalar_t>();
  scalar_t* dys = xs + (TH + 4) * XW * CB;
  T* dls = reinterpret_cast<T*>(dys + (TH + 2) * LW * CB);
  const int tid = threadIdx.x, cx = tid % CB, grp = tid / CB, C = p.C;
  const TileItem it = g.grid.decode(blockIdx.x);
  const int w0 = it.tw * TW, c0 = it.c * CB, c = c0 + cx;
  const ChannelParams<T> cp = channel_params<T>(p, it.n, std::min(c, C - 1));
  const LoadColumn xcol = nhwc_load_column<CB, XW, 2>(x, tid, w0, W, c0, C);
  const LoadColumn dcol = nhwc_load_column<CB, LW, 1>(dy, tid, w0, W, c0, C);
  T acc[NUM_SLOTS];
#pragma unroll
  for (int k = 0; k < NUM_SLOTS; ++k) acc[k] = T(0);
  const int t_end = std::min(g.grid.tiles_h, (it.strip + 1) * g.grid.strip_len);
  for (int t = it.strip * g.grid.strip_len; t < t_end; ++t) {
    const int h0 = t * TH;
    __syncthreads();  // the previous tile's readers of xs, dys and dls are done
    copy_region<kVec>(Region<scalar_t>{x.at(it.n, c0, h0, w0), xs, XW * CB, -2, TH + 4, -h0, H - h0,
                                       static_cast<int>(x.sh), static_cast<int>(x.sc)},
                xcol, nhwc_rows_per_pass<CB, XW, scalar_t>());
    copy_region<kVec>(Region<scalar_t>{dy.at(it.n, c0, h0, w0), dys, LW * CB, -1, TH + 2, -h0, H - h0,
                                       static_cast<int>(dy.sh), static_cast<int>(dy.sc)},
                dcol, nhwc_rows_per_pass<CB, LW, scalar_t>());
    async_copy_wait_all();
    __syncthreads();
    const Tile s{xs, dys, dls, h0, w0, H, W};
    if (c < C) nhwc_dl_phase(s, grp, cx, cp, acc);
    __syncthreads();
    if (c < C) nhwc_dx_phase(s, dx + ((int64_t(it.n) * H + h0) * W + w0) * C + c, C, grp, cx, cp);
  }
  T* out = ws + ((int64_t(it.n) * g.grid.partials + it.strip * g.grid.tiles_w + it.tw) * C + c0) * NUM_SLOTS;
  block_reduce_slots<CB>(acc, dynamic_smem<T>(), [&](int s, int ch, T v) {
    if (c0 + ch < C) out[ch * NUM_SLOTS + s] = v;
  });
}

}  // namespace cuda
}  // namespace lgf
