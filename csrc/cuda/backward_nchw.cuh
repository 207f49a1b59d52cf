// Backward kernel of the fused LGF op for NCHW (and any layout that is not channels_last).
// Nothing is saved from the forward. Per tile, a block copies x with a 2-pixel halo and dy with a
// 1-pixel halo into shared memory in one phase (tile_loader.cuh), recomputes l and dl on the
// tile plus a 1-pixel halo (dl outside the image is 0), then writes dx = dy + the
// rotated-filter convolution of dl. The slot sums (lgf_math.h) of the pixels a thread owns
// accumulate in registers over the strip of tiles the block walks; block_reduce_slots writes
// one workspace entry per (n, partial, c, slot):
//   ws[((n * partials + strip * tiles_w + tw) * C + c) * NUM_SLOTS + slot]
// Thread (tr, tq) works on vector column tq: dl rows tr * R - 1 .. tr * R + R - 2 (R =
// nchw_backward_rows; the tile's th = tr_count * R - 2 rows plus one above and one below are exactly
// R per thread row), then dx rows tr * R .. tr * R + R - 1 (the last thread row has 2 fewer).
// kVec: the 16-byte path for x, dy and dx. kChunked: tiles narrower than the row, so the first
// and last vector columns also compute the dl columns left and right of the tile; otherwise
// those columns are outside the image and hold zeros. The three kernels at the end are the
// combinations the wrapper launches.
#pragma once

#include "cuda/channel_params.cuh"
#include "cuda/slot_sums.cuh"
#include "cuda/stencil.cuh"
#include "cuda/tile_loader.cuh"

namespace lgf {
namespace cuda {

// Resident blocks per SM the backward kernels are compiled for: 2 leaves them 128 registers per
// thread (the 16 slot sums, the 9 taps and the rolling windows stay in registers; at 3 blocks
// = 80 registers the compiler spills or re-reads). Their copies are cp.async, which need no
// registers, so 2 blocks of 8 warps still keep tens of KB per SM in flight.
constexpr int kBackwardMinBlocks = 2;

// Pixels a thread handles at once inside its vector: 4 (fewer registers live than a whole
// 8-element bfloat16 / float16 vector).
template <int V>
constexpr int kChunk = V < 4 ? V : 4;

// dl of the V pixels of one row under this thread's vector, from the x row windows a, b, c
// around them and their dy (shared, at dyp); stored to dlp. valid: the row is in the image and
// so is the vector's first pixel (kVec: the whole vector); else dl is 0 (computed on the zeros
// copied there and then selected away: no branch, so the windows are converted once). Pixels of
// the tile (own) in the image add their slot sums.
template <bool kVec, int V, typename T, typename scalar_t>
__device__ __forceinline__ void nchw_dl_vector(const T (&a)[V + 2], const T (&b)[V + 2], const T (&c)[V + 2],
                                               const scalar_t* dyp, T* dlp, const ChannelParams<T>& cp, bool valid,
                                               int nv, bool own, T (&acc)[NUM_SLOTS]) {
  constexpr int E = kChunk<V>;
#pragma unroll
  for (int j0 = 0; j0 < V; j0 += E) {
    T d[E], dl[E];
    load_vector<E>(dyp + j0, d);
#pragma unroll
    for (int e = 0; e < E; ++e) {
      T px[9];
      gather3x3<V>(a, b, c, j0 + e, px);
      const T l = conv3x3(cp.f, cp.bias, px);
      const PointGrad<T> pg = backward_point(l, d[e], cp.k);
      const bool in = valid && (kVec || j0 + e < nv);
      dl[e] = in ? pg.dl : T(0);
      add_slots(acc, pg, l, d[e], px, own && in);
    }
    store_vector<E>(dlp + j0, dl);
  }
}

// dl of one pixel whose 3x3 window of x starts at x0 (shared rows sw apart) and whose dy is at dyp.
template <typename T, typename scalar_t>
__device__ __forceinline__ T nchw_dl_point(const scalar_t* x0, int sw, const scalar_t* dyp,
                                           const ChannelParams<T>& cp) {
  T px[9];
#pragma unroll
  for (int i = 0; i < 3; ++i)
#pragma unroll
    for (int j = 0; j < 3; ++j) px[i * 3 + j] = static_cast<T>(x0[i * sw + j]);
  return backward_point(conv3x3(cp.f, cp.bias, px), static_cast<T>(*dyp), cp.k).dl;
}

// Shared tiles of one tile row: x rows h0 - 2 .. h0 + th + 1, dy and dl rows h0 - 1 .. h0 + th
// (dl row d of the tile, image row h0 + d, is x rows d + 1 .. d + 3 and dy / dl row d + 1);
// vector column v holds image columns w0 + (v - 1) V .. w0 + v V - 1.
template <typename scalar_t, typename T>
struct NchwBackwardTile {
  const scalar_t* xs;
  const scalar_t* dys;
  T* dls;
  int sw, h0, w0, H, W;
};

template <bool kVec, bool kChunked, typename scalar_t, typename T>
__device__ __forceinline__ void nchw_dl_phase(const NchwBackwardTile<scalar_t, T>& s, const NchwPlan& g, int tr,
                                              int tq, int nv, const ChannelParams<T>& cp, T (&acc)[NUM_SLOTS]) {
  constexpr int V = kVecElems<scalar_t>, R = nchw_backward_rows(sizeof(scalar_t));
  const int sw = s.sw, col = (tq + 1) * V, r0 = tr * R;  // dl row r0 - 1 + i: x rows r0 + i .., dy row r0 + i
  const scalar_t* xrow = s.xs + r0 * sw + col;
  const scalar_t* dyrow = s.dys + r0 * sw + col;
  T* dlrow = s.dls + r0 * sw + col;
  T win[3][V + 2];
  load_row_window<V>(xrow, win[0]);
  load_row_window<V>(xrow + sw, win[1]);
#pragma unroll
  for (int i = 0; i < R; ++i) {
    xrow += sw;
    load_row_window<V>(xrow + sw, win[(i + 2) % 3]);
    const int d = r0 - 1 + i;
    const bool valid = static_cast<unsigned>(s.h0 + d) < static_cast<unsigned>(s.H) && nv > 0;
    nchw_dl_vector<kVec, V>(win[i % 3], win[(i + 1) % 3], win[(i + 2) % 3], dyrow, dlrow, cp, valid, nv,
                            d >= 0 && d < g.th, acc);
    dyrow += sw;
    dlrow += sw;
  }
  if constexpr (kChunked) {  // the dl columns left and right of the tile
    const bool left = tq == 0, right = tq == g.twv - 1;
    if (!left && !right) return;
#pragma unroll
    for (int i = 0; i < R; ++i) {
      const int row = (r0 + i) * sw;
      const bool row_in = static_cast<unsigned>(s.h0 + r0 - 1 + i) < static_cast<unsigned>(s.H);
      if (left) {
        const bool in = row_in && s.w0 > 0;
        s.dls[row + V - 1] = in ? nchw_dl_point(s.xs + row + V - 2, sw, s.dys + row + V - 1, cp) : T(0);
      }
      if (right) {
        const bool in = row_in && s.w0 + g.tw < s.W;
        s.dls[row + V + g.tw] = in ? nchw_dl_point(s.xs + row + V + g.tw - 1, sw, s.dys + row + V + g.tw, cp) : T(0);
      }
    }
  }
}

template <bool kVec, typename scalar_t, typename T>
__device__ __forceinline__ void nchw_dx_phase(const NchwBackwardTile<scalar_t, T>& s, const NchwPlan& g,
                                              scalar_t* dxt, int tr, int tq, int nv, const ChannelParams<T>& cp) {
  constexpr int V = kVecElems<scalar_t>, R = nchw_backward_rows(sizeof(scalar_t));
  const int sw = s.sw, col = (tq + 1) * V, r0 = tr * R;
  const T* dlrow = s.dls + r0 * sw + col;  // dx row r of the tile <- dl shared rows r .. r + 2, dy row r + 1
  const scalar_t* dyrow = s.dys + (r0 + 1) * sw + col;
  scalar_t* out = dxt + r0 * s.W + tq * V;
  T win[3][V + 2];
  load_row_window<V>(dlrow, win[0]);
  load_row_window<V>(dlrow + sw, win[1]);
#pragma unroll
  for (int i = 0; i < R; ++i) {
    const int r = r0 + i;
    if (r >= g.th || s.h0 + r >= s.H) break;  // the last thread row has R - 2 rows; rows below the image
    dlrow += sw;
    load_row_window<V>(dlrow + sw, win[(i + 2) % 3]);
    constexpr int E = kChunk<V>;
#pragma unroll
    for (int j0 = 0; j0 < V; j0 += E) {
      T d[E], o[E];
      load_vector<E>(dyrow + j0, d);
#pragma unroll
      for (int e = 0; e < E; ++e) {
        T px[9];
        gather3x3<V>(win[i % 3], win[(i + 1) % 3], win[(i + 2) % 3], j0 + e, px);
        o[e] = conv3x3_rot(cp.f, d[e], px);
      }
      store_outputs<kVec>(out + j0, o, nv - j0);
    }
    dyrow += sw;
    out += s.W;
  }
}

template <bool kVec, bool kChunked, typename scalar_t, typename T>
__device__ __forceinline__ void backward_nchw(const TileSource<scalar_t>& dy, const TileSource<scalar_t>& x,
                                              scalar_t* __restrict__ dx, const ParamView<scalar_t>& p,
                                              T* __restrict__ ws, const NchwPlan& g, int H, int W) {
  constexpr int V = kVecElems<scalar_t>;
  scalar_t* xs = dynamic_smem<scalar_t>();  // th + 4 rows of g.sw, then dy: th + 2 rows, then dl: th + 2 rows of T
  scalar_t* dys = xs + (g.th + 4) * g.sw;
  T* dls = reinterpret_cast<T*>(dys + (g.th + 2) * g.sw);
  const int tid = threadIdx.x;
  const TileItem it = g.grid.decode(blockIdx.x);
  const ChannelParams<T> cp = channel_params<T>(p, it.n, it.c);
  const int w0 = it.tw * g.tw;
  const int tr = static_cast<int>(g.div_twv.div(tid)), tq = tid - tr * g.twv;
  const bool active = tr < g.tr;
  const int nv = std::min(V, W - (w0 + tq * V));
  const LoadColumn xcol = nchw_load_column(x, g, tid, g.th + 4, w0, W);
  const LoadColumn dcol = nchw_load_column(dy, g, tid, g.th + 2, w0, W);
  if constexpr (!kChunked) {  // whole rows: the dl columns left and right of the tile are outside the image
#pragma unroll 1
    for (int k = tid; k < 2 * (g.th + 2); k += g.threads) dls[(k >> 1) * g.sw + ((k & 1) ? V + g.tw : V - 1)] = T(0);
  }
  T acc[NUM_SLOTS];
#pragma unroll
  for (int k = 0; k < NUM_SLOTS; ++k) acc[k] = T(0);
  const int t_end = std::min(g.grid.tiles_h, (it.strip + 1) * g.grid.strip_len);
  for (int t = it.strip * g.grid.strip_len; t < t_end; ++t) {
    const int h0 = t * g.th;
    __syncthreads();  // the previous tile's readers of xs, dys and dls are done
    copy_region<kVec>(Region<scalar_t>{x.at(it.n, it.c, h0, w0), xs, g.sw, -2, -h0, H - h0,
                                       static_cast<int>(x.sh), static_cast<int>(x.sw)},
                      xcol, g.rp);
    copy_region<kVec>(Region<scalar_t>{dy.at(it.n, it.c, h0, w0), dys, g.sw, -1, -h0, H - h0,
                                       static_cast<int>(dy.sh), static_cast<int>(dy.sw)},
                      dcol, g.rp);
    async_copy_wait_all();
    __syncthreads();
    const NchwBackwardTile<scalar_t, T> s{xs, dys, dls, g.sw, h0, w0, H, W};
    if (active) nchw_dl_phase<kVec, kChunked>(s, g, tr, tq, nv, cp, acc);
    __syncthreads();
    if (active && nv > 0) {
      nchw_dx_phase<kVec>(s, g, dx + ((int64_t(it.n) * p.C + it.c) * H + h0) * W + w0, tr, tq, nv, cp);
    }
  }
  T* out = ws + ((int64_t(it.n) * g.grid.partials + it.strip * g.grid.tiles_w + it.tw) * p.C + it.c) * NUM_SLOTS;
  // The reduction buffer (at most 8 warps x 16 values) lies in the x tile at the start of shared
  // memory, whose last readers (the dl phase) finished before the barrier ahead of the dx phase;
  // the dx phase reads only dys and dls. So no barrier is needed before it is written.
  block_reduce_plane(acc, dynamic_smem<T>(), g.threads / 32, [&](int s, T v) { out[s] = v; });
}

// The kernels: whole rows on the 16-byte path, rows cut into several tiles on the 16-byte path,
// and the general one (any strides, any tiles).
#define LGF_BACKWARD_NCHW_KERNEL(name, vec, chunked)                                                         \
  template <typename scalar_t, typename T>                                                                    \
  __global__ void __launch_bounds__(kThreads, kBackwardMinBlocks)                                             \
      name(TileSource<scalar_t> dy, TileSource<scalar_t> x, scalar_t* __restrict__ dx, ParamView<scalar_t> p, \
           T* __restrict__ ws, NchwPlan g, int H, int W) {                                                    \
    backward_nchw<vec, chunked, scalar_t, T>(dy, x, dx, p, ws, g, H, W);                                      \
  }
LGF_BACKWARD_NCHW_KERNEL(backward_nchw_kernel, true, false)
LGF_BACKWARD_NCHW_KERNEL(backward_nchw_wide_kernel, true, true)
LGF_BACKWARD_NCHW_KERNEL(backward_nchw_strided_kernel, false, true)
#undef LGF_BACKWARD_NCHW_KERNEL

}  // namespace cuda
}  // namespace lgf
