// Backward kernel of the fused LGF op for channels_last x: the same three phases as the NCHW
// kernel (backward_nchw.cuh) on a 16 x 16 pixel tile of CB channels. Shared tiles are
// [row][pixel][channel]: x with a 2-pixel halo, dy and dl with a 1-pixel halo. A thread takes P
// neighbouring channels (NhwcTile::kBackwardPair); a group of CB / P threads covers the
// channels of a pixel and rolls a 3 x 3 window along a row segment of the tile (dl of its own
// pixels with their slot sums, later dx); four groups on different warps also compute dl on the
// ring around the tile (no slot sums there): the rows above and below rolling along them, the
// columns left and right rolling down. The workspace layout is the NCHW kernel's. kVec as in
// forward_kernels.cuh (for x and dy both; it also allows paired stores of dx).
#pragma once

#include "cuda/channel_params.cuh"
#include "cuda/slot_sums.cuh"
#include "cuda/stencil.cuh"
#include "cuda/tile_loader.cuh"

namespace lgf {
namespace cuda {

template <typename scalar_t, typename T>
struct NhwcBackwardTile {
  static constexpr int CB = NhwcTile<scalar_t>::kBackwardCB, P = NhwcTile<scalar_t>::kBackwardPair;
  static constexpr int TH = NhwcTile<scalar_t>::kTH, TW = NhwcTile<scalar_t>::kTW;
  static constexpr int XW = TW + 4, LW = TW + 2;      // x / dl pixels per shared row
  static constexpr int L = CB / P, G = kThreads / L;  // threads per pixel; groups
  static constexpr int SEGS = G / TH, K = TW / SEGS;  // a group's own row segment
  static_assert(G % TH == 0 && TW % SEGS == 0, "one row segment per group");
  const scalar_t* xs;   // [TH + 4][XW][CB]: image rows h0 - 2 .., columns w0 - 2 ..
  const scalar_t* dys;  // [TH + 2][LW][CB]: image rows h0 - 1 .., columns w0 - 1 ..
  T* dls;               // like dys
  int h0, w0, H, W;
};

// dl of pixels along one line of the dl tile, rolling a 3 x 3 window of x: N pixels from dl
// position (rr, qq) (dl tile coordinates, image pixel (h0 - 1 + rr, w0 - 1 + qq)), stepping
// right, or down when kDown, for the P channels at `ch` of the tile. The x window of dl
// (rr, qq) is xs rows rr .. rr + 2, columns qq .. qq + 2. valid(k): pixel k is in the image
// (else its dl is 0); its slot sums are added when take(k).
template <bool kDown, int N, typename scalar_t, typename T, int P, typename Valid, typename Take>
__device__ __forceinline__ void nhwc_dl_line(const NhwcBackwardTile<scalar_t, T>& s, int rr, int qq, int ch,
                                             const ChannelParams<T> (&cp)[P], T (&acc)[P][NUM_SLOTS], Valid valid,
                                             Take take) {
  using Tile = NhwcBackwardTile<scalar_t, T>;
  constexpr int CB = Tile::CB, XW = Tile::XW, LW = Tile::LW;
  constexpr int kAlongX = kDown ? XW * CB : CB, kAcrossX = kDown ? CB : XW * CB;  // x steps
  constexpr int kAlongL = kDown ? LW * CB : CB;                                     // dy / dl step
  const scalar_t* x = s.xs + (rr * XW + qq) * CB + ch;
  const scalar_t* d = s.dys + (rr * LW + qq) * CB + ch;
  T* dl = s.dls + (rr * LW + qq) * CB + ch;
  T win[3][3][P];  // [line across the direction][position along it, mod 3][channel]
#pragma unroll
  for (int k = 0; k < N + 2; ++k) {
#pragma unroll
    for (int a = 0; a < 3; ++a) load_vector<P>(x + a * kAcrossX + k * kAlongX, win[a][k % 3]);
    if (k < 2) continue;
    const int m = k - 2;  // the pixel whose window is now complete
    const bool in = valid(m), own = in && take(m);
    T dyv[P], out[P];
    load_vector<P>(d + m * kAlongL, dyv);
#pragma unroll
    for (int i = 0; i < P; ++i) {
      T px[9];
#pragma unroll
      for (int a = 0; a < 3; ++a)
#pragma unroll
        for (int b = 0; b < 3; ++b) px[kDown ? b * 3 + a : a * 3 + b] = win[a][(m + b) % 3][i];
      const T l = conv3x3(cp[i].f, cp[i].bias, px);
      const PointGrad<T> pg = backward_point(l, dyv[i], cp[i].k);
      out[i] = in ? pg.dl : T(0);
      add_slots(acc[i], pg, l, dyv[i], px, own);
    }
    store_vector<P>(dl + m * kAlongL, out);
  }
}

template <typename scalar_t, typename T, int P>
__device__ __forceinline__ void nhwc_dl_phase(const NhwcBackwardTile<scalar_t, T>& s, int grp, int ch,
                                              const ChannelParams<T> (&cp)[P], T (&acc)[P][NUM_SLOTS]) {
  using Tile = NhwcBackwardTile<scalar_t, T>;
  constexpr int TH = Tile::TH, TW = Tile::TW, G = Tile::G, K = Tile::K;
  const int r = grp / Tile::SEGS, q0 = (grp % Tile::SEGS) * K;  // own pixels: row r, columns q0 ..
  const bool row_in = s.h0 + r < s.H;
  const int cols_in = s.W - s.w0 - q0;
  nhwc_dl_line<false, K>(s, r + 1, q0 + 1, ch, cp, acc, [&](int m) { return row_in && m < cols_in; },
                         [](int) { return true; });
  // the ring: dl rows -1 and TH (TW + 2 pixels each), dl columns -1 and TW (TH pixels each)
  for (int u = grp; u < 2; u += G) {
    const int rr = u * (TH + 1), h = s.h0 - 1 + rr;
    const bool row_ok = h >= 0 && h < s.H;
    nhwc_dl_line<false, TW + 2>(
        s, rr, 0, ch, cp, acc, [&](int m) { return row_ok && static_cast<unsigned>(s.w0 - 1 + m) < unsigned(s.W); },
        [](int) { return false; });
  }
  for (int u = (grp + G / 2) % G; u < 2; u += G) {
    const int qq = u * (TW + 1), w = s.w0 - 1 + qq;
    const bool col_ok = w >= 0 && w < s.W;
    nhwc_dl_line<true, TH>(s, 1, qq, ch, cp, acc, [&](int m) { return col_ok && s.h0 + m < s.H; },
                           [](int) { return false; });
  }
}

// dx on the group's own row segment: pixel (r, q) <- dl rows r .. r + 2, columns q .. q + 2
// (dl tile coordinates), dy at (r + 1, q + 1). dxt: dx at the tile origin and this thread's
// first channel; nc: its channels inside the tensor (kVec: all P).
template <bool kVec, typename scalar_t, typename T, int P>
__device__ __forceinline__ void nhwc_dx_phase(const NhwcBackwardTile<scalar_t, T>& s, scalar_t* dxt, int C, int nc,
                                              int grp, int ch, const ChannelParams<T> (&cp)[P]) {
  using Tile = NhwcBackwardTile<scalar_t, T>;
  constexpr int CB = Tile::CB, LW = Tile::LW, K = Tile::K;
  const int r = grp / Tile::SEGS, q0 = (grp % Tile::SEGS) * K;
  if (s.h0 + r >= s.H) return;
  const int cols_in = s.W - s.w0 - q0;
  const T* dl = s.dls + (r * LW + q0) * CB + ch;
  const scalar_t* d = s.dys + ((r + 1) * LW + q0 + 1) * CB + ch;
  scalar_t* out = dxt + (int64_t(r) * s.W + q0) * C;
  T win[3][3][P];
#pragma unroll
  for (int k = 0; k < K + 2; ++k) {
#pragma unroll
    for (int a = 0; a < 3; ++a) load_vector<P>(dl + (a * LW + k) * CB, win[a][k % 3]);
    if (k < 2) continue;
    const int q = k - 2;
    T dyv[P], v[P];
    load_vector<P>(d + q * CB, dyv);
#pragma unroll
    for (int i = 0; i < P; ++i) {
      T px[9];
#pragma unroll
      for (int a = 0; a < 3; ++a)
#pragma unroll
        for (int b = 0; b < 3; ++b) px[a * 3 + b] = win[a][(q + b) % 3][i];
      v[i] = conv3x3_rot(cp[i].f, dyv[i], px);
    }
    if (q < cols_in) store_outputs<kVec>(out, v, nc);
    out += C;
  }
}

template <bool kVec, typename scalar_t, typename T>
__device__ __forceinline__ void backward_nhwc(const TileSource<scalar_t>& dy, const TileSource<scalar_t>& x,
                                              scalar_t* __restrict__ dx, const ParamView<scalar_t>& p,
                                              T* __restrict__ ws, const NhwcPlan& g, int H, int W) {
  using Tile = NhwcBackwardTile<scalar_t, T>;
  constexpr int CB = Tile::CB, P = Tile::P, L = Tile::L, TH = Tile::TH, TW = Tile::TW, XW = Tile::XW,
                LW = Tile::LW;
  scalar_t* xs = dynamic_smem<scalar_t>();
  scalar_t* dys = xs + (TH + 4) * XW * CB;
  T* dls = reinterpret_cast<T*>(dys + (TH + 2) * LW * CB);
  const int tid = threadIdx.x, lane = tid % L, grp = tid / L, C = p.C;
  const TileItem it = g.grid.decode(blockIdx.x);
  const int w0 = it.tw * TW, c0 = it.c * CB, ch = lane * P, c = c0 + ch;
  ChannelParams<T> cp[P];
#pragma unroll
  for (int i = 0; i < P; ++i) cp[i] = channel_params<T>(p, it.n, std::min(c + i, C - 1));
  T acc[P][NUM_SLOTS];
#pragma unroll
  for (int i = 0; i < P; ++i)
#pragma unroll
    for (int k = 0; k < NUM_SLOTS; ++k) acc[i][k] = T(0);
  const int h_end = std::min(H, (it.strip + 1) * g.grid.strip_len * TH);
  for (int h0 = it.strip * g.grid.strip_len * TH; h0 < h_end; h0 += TH) {
    __syncthreads();  // the previous tile's readers of xs, dys and dls are done
    // tile origins and copy columns are recomputed per tile (a few instructions) rather than
    // kept live across the phases
    const int n = opaque(it.n), cb = opaque(c0), wb = opaque(w0), t2 = opaque(tid);
    copy_region<kVec>(Region<scalar_t>{x.at(n, cb, h0, wb), xs, XW * CB, -2, -h0, H - h0,
                                       static_cast<int>(x.sh), static_cast<int>(x.sc)},
                      nhwc_load_column<CB, XW, 2, TH + 4>(x, t2, wb, W, cb, C),
                      nhwc_rows_per_pass<CB, XW, scalar_t>());
    copy_region<kVec>(Region<scalar_t>{dy.at(n, cb, h0, wb), dys, LW * CB, -1, -h0, H - h0,
                                       static_cast<int>(dy.sh), static_cast<int>(dy.sc)},
                      nhwc_load_column<CB, LW, 1, TH + 2>(dy, t2, wb, W, cb, C),
                      nhwc_rows_per_pass<CB, LW, scalar_t>());
    async_copy_wait_all();
    __syncthreads();
    const Tile s{xs, dys, dls, h0, w0, H, W};
    if (c < C) nhwc_dl_phase(s, grp, ch, cp, acc);
    __syncthreads();
    if (c < C) nhwc_dx_phase<kVec>(s, dx + ((int64_t(n) * H + h0) * W + wb) * C + c, C, C - c, grp, ch, cp);
  }
  T* out = ws + ((int64_t(it.n) * g.grid.partials + it.strip * g.grid.tiles_w + it.tw) * C + c0) * NUM_SLOTS;
#pragma unroll
  for (int i = 0; i < P; ++i) {
    block_reduce_slots<L>(acc[i], dynamic_smem<T>(), [&](int s, int ln, T v) {
      const int cc = ln * P + i;
      if (c0 + cc < C) out[cc * NUM_SLOTS + s] = v;
    });
  }
}

// The kernels: the 16-byte path and the general one (any strides).
template <typename scalar_t, typename T>
__global__ void __launch_bounds__(kThreads, kBackwardMinBlocks)
    backward_nhwc_kernel(TileSource<scalar_t> dy, TileSource<scalar_t> x, scalar_t* __restrict__ dx,
                         ParamView<scalar_t> p, T* __restrict__ ws, NhwcPlan g, int H, int W) {
  backward_nhwc<true, scalar_t, T>(dy, x, dx, p, ws, g, H, W);
}

template <typename scalar_t, typename T>
__global__ void __launch_bounds__(kThreads, kBackwardMinBlocks)
    backward_nhwc_strided_kernel(TileSource<scalar_t> dy, TileSource<scalar_t> x, scalar_t* __restrict__ dx,
                                 ParamView<scalar_t> p, T* __restrict__ ws, NhwcPlan g, int H, int W) {
  backward_nhwc<false, scalar_t, T>(dy, x, dx, p, ws, g, H, W);
}

}  // namespace cuda
}  // namespace lgf
