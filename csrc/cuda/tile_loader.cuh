// Copies a tile (with its halo) of x or dy from global into shared memory: every thread issues
// all its copies before anyone waits (cp.async with zero fill outside the tensor), so a thread
// has several loads in flight and no registers hold them. The data stays in the input dtype in
// shared memory; the compute converts on read.
//
// A region is rows of 16-byte vectors; thread t owns one vector column of it and copies rows r,
// r + rp, r + 2 rp, ... (rp = rows the block covers per pass; how many: LoadColumn::passes, from
// the region's row count given to nchw_load_column / nhwc_load_column). The fast path (kVec)
// copies whole vectors; the other copies element by element through the tensor's own strides
// (any strides, stride 0 included). The two are separate instantiations, so neither carries
// the other's code.
#pragma once

#include "cuda/tile_plan.cuh"

namespace lgf {
namespace cuda {

template <typename scalar_t>
struct Region {
  const scalar_t* origin;  // the tensor's element at the tile origin
  scalar_t* smem;          // shared-memory row 0 of the region
  int srow;                // shared row stride (elements)
  int row0;                // image row of region row 0, relative to the tile origin
  int h_begin, h_end;      // relative image rows inside the tensor: [h_begin, h_end)
  int sh, es;              // row stride; element stride inside a vector (element-wise copies)
};

// This thread's vector column of a region.
struct LoadColumn {
  int row;     // first region row it copies
  int passes;  // rows it copies: row, row + rp, ... below the region's end
  int goff;    // offset of the vector's first element from the tile origin, without the row part
  int scol;    // shared-memory column of that element
  int nv;      // elements of the vector inside the tensor (a prefix of it; 0 = none)
};

template <typename scalar_t>
__device__ __forceinline__ void copy_element(scalar_t* dst, const scalar_t* src, bool valid) {
  if constexpr (sizeof(scalar_t) >= 4) {
    async_copy<sizeof(scalar_t)>(dst, src, valid);
  } else {  // cp.async has no 2-byte copy: a plain load and store
    *dst = valid ? *src : scalar_t(0);
  }
}

// Issues this thread's copies of a region (complete after async_copy_wait_all()). Addresses
// step by one pass per trip; a copy outside the tensor zero-fills without reading its source.
template <bool kVec, typename scalar_t>
__device__ __forceinline__ void copy_region(const Region<scalar_t>& g, const LoadColumn& col, int rp) {
  constexpr int V = kVecElems<scalar_t>;
  int hr = g.row0 + col.row - g.h_begin;  // rows below the first image row; in the image while < span
  const unsigned span = static_cast<unsigned>(g.h_end - g.h_begin);
  scalar_t* dst = g.smem + col.row * g.srow + col.scol;
  const scalar_t* src = g.origin + ((g.row0 + col.row) * g.sh + col.goff);
  const int dst_step = rp * g.srow;
  const int64_t src_step = int64_t(rp) * g.sh;
  const bool col_in = col.nv > 0;
#pragma unroll 2
  for (int k = 0; k < col.passes; ++k) {
    const bool row_in = static_cast<unsigned>(hr) < span;
    if constexpr (kVec) {
      async_copy<16>(dst, src, row_in && col_in);
    } else {
#pragma unroll
      for (int j = 0; j < V; ++j) copy_element(dst + j, src + j * g.es, row_in && j < col.nv);
    }
    dst += dst_step;
    src += src_step;
    hr += rp;
  }
}

// NCHW: the region (`rows` rows) spans vector columns -1 .. twv of the tile (one vector of halo
// on each side); thread t takes column t % rwv and rows from t / rwv.
template <typename scalar_t>
__device__ __forceinline__ LoadColumn nchw_load_column(const TileSource<scalar_t>& src, const NchwPlan& p, int tid,
                                                       int rows, int w0, int W) {
  constexpr int V = kVecElems<scalar_t>;
  const int r = static_cast<int>(p.div_rwv.div(tid)), v = tid - r * p.rwv;
  const int w = w0 + (v - 1) * V;  // first column of the vector
  LoadColumn c;
  c.row = r;
  c.passes = r < p.rp && r < rows ? static_cast<int>(p.div_rp.div(rows - 1 - r)) + 1 : 0;
  c.goff = (v - 1) * V * static_cast<int>(src.sw);
  c.scol = v * V;
  c.nv = w < 0 ? 0 : std::min(V, std::max(0, W - w));
  return c;
}

// NHWC: the region is ROWS rows of PW pixels (HALO of them on each side) x CB channels, the
// channels of a pixel in CB / V vectors; thread t takes vector t % (PW * CB / V) of a row.
template <int CB, int PW, int HALO, int ROWS, typename scalar_t>
__device__ __forceinline__ LoadColumn nhwc_load_column(const TileSource<scalar_t>& src, int tid, int w0, int W,
                                                       int c0, int C) {
  constexpr int V = kVecElems<scalar_t>, VPP = CB / V, RWV = PW * VPP, RP = kThreads / RWV;
  static_assert(CB % V == 0 && RP >= 1, "NHWC tile rows");
  const int r = tid / RWV, v = tid % RWV, px = v / VPP, q = v % VPP;
  const int w = w0 - HALO + px, ch = c0 + q * V;
  LoadColumn c;
  c.row = r;
  c.passes = r < RP && r < ROWS ? (ROWS - 1 - r) / RP + 1 : 0;
  c.goff = (px - HALO) * static_cast<int>(src.sw) + q * V * static_cast<int>(src.sc);
  c.scol = px * CB + q * V;
  c.nv = (w >= 0 && w < W) ? std::min(V, std::max(0, C - ch)) : 0;
  return c;
}

template <int CB, int PW, typename scalar_t>
constexpr int nhwc_rows_per_pass() {
  return kThreads / (PW * CB / kVecElems<scalar_t>);
}

}  // namespace cuda
}  // namespace lgf
