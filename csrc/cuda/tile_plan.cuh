// Launch geometry of the CUDA kernels, decided on the host and shared by the wrappers and the
// CPU emulation: tile shapes, how blocks are numbered, shared-memory sizes, the contiguous fast
// path and the 32-bit offset check. No ATen here (the emulation compiles it without CUDA).
//
// One block = one work item (the grid has exactly `items` blocks, decoded once per block):
//   NCHW: a tile of th rows x tw columns of one (n, c) plane; the width is chosen per launch so
//         that a tile is usually a whole row (no column halo); threads compute kNchwRows rows of
//         one 16-byte vector each (tr x twv of the 256 threads).
//   NHWC: a kTH x kTW pixel tile of a block of CB channels; one channel per thread.
// The backward groups `strip_len` consecutive tile rows into one block (a strip), whose slot sums
// become one workspace entry per channel.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include "cuda/device_support.cuh"

namespace lgf {
namespace cuda {

constexpr int kThreads = 256;                // threads per block (NCHW: at most; see NchwPlan::threads)
constexpr int kSlotStride = kThreads + 1;    // row of the slot reduction buffer (padded: no bank conflicts)
constexpr int kNchwRows = 4;                 // NCHW forward: output rows per thread
constexpr int kNchwMaxRowVecs = 64;          // NCHW: widest tile, in vectors (256 fp32 / 512 bf16 columns)
constexpr int kForwardSmemBudget = 32 * 1024;
constexpr int kBackwardSmemBudget = 80 * 1024;  // two blocks per SM on an A100 (164 KB) too
constexpr int64_t kTargetBlocks = 1024;      // backward: split planes into strips up to about this many blocks
constexpr int64_t kMaxPartials = 1024;       // ... keeping N * partials (what finalize sums per channel) at most this

template <typename scalar_t>
constexpr int kVecElems = 16 / static_cast<int>(sizeof(scalar_t));

// NCHW backward: dl rows per thread row (the tile has that many per thread row, minus the 2 halo
// rows). Longer for 2-byte types: fewer window loads and conversions per row, and tiles that fit
// common heights with whole warps (e.g. 3 x 54 rows of 8 x 20 threads for W = H = 160).
constexpr int nchw_backward_rows(int elem_bytes) { return elem_bytes == 2 ? 7 : 4; }

// NHWC tiles (compile-time). CB * sizeof(scalar_t) = 64 bytes of channels per pixel in the forward;
// the backward keeps three tiles in shared memory and takes 16 channels (8 for fp64, 32 for
// float16/bfloat16, whose threads take kBackwardPair = 2 neighbouring channels each: paired
// shared-memory accesses and stores, one set of addresses and predicates for both).
template <typename scalar_t>
struct NhwcTile {
  static constexpr int kTH = 16, kTW = 16;
  static constexpr int kForwardCB = 64 / static_cast<int>(sizeof(scalar_t));
  static constexpr int kBackwardPair = sizeof(scalar_t) == 2 ? 2 : 1;
  static constexpr int kBackwardCB = sizeof(scalar_t) == 8 ? 8 : 16 * kBackwardPair;
};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// n / d and n % d for a divisor fixed at launch, by a multiply-high, an add and a shift (exact for
// n < 2^31; the classic round-up method, with m = floor(2^32 * (2^s - d) / d) + 1, 2^s >= d).
struct FastDiv {
  uint32_t d = 1, m = 1, s = 0;
  FastDiv() = default;
  explicit FastDiv(uint32_t divisor) : d(divisor) {
    while ((uint64_t(1) << s) < d) ++s;
    m = static_cast<uint32_t>(((uint64_t(1) << 32) * ((uint64_t(1) << s) - d)) / d + 1);
  }
  __host__ __device__ __forceinline__ uint32_t div(uint32_t n) const { return (mulhi_u32(n, m) + n) >> s; }
  __host__ __device__ __forceinline__ uint32_t mod(uint32_t n) const { return n - div(n) * d; }
};

// A work item: sample n, channel c (NCHW) or channel block (NHWC), tile row or strip, tile column.
struct TileItem {
  int n, c, strip, tw;
};

// Items are numbered tile column fastest, then strip, then channel (block), then n.
struct ItemGrid {
  int tiles_w, tiles_h, strip_len, strips, c_blocks;
  int items;     // blocks of the launch
  int partials;  // backward workspace entries per (n, c, slot): strips * tiles_w
  FastDiv div_tiles_w, div_strips, div_c_blocks;

  __device__ __forceinline__ TileItem decode(uint32_t item) const {
    TileItem t;
    const uint32_t q = div_tiles_w.div(item), plane = div_strips.div(q);
    t.tw = static_cast<int>(item - q * div_tiles_w.d);
    t.strip = static_cast<int>(q - plane * div_strips.d);
    t.n = static_cast<int>(div_c_blocks.div(plane));
    t.c = static_cast<int>(plane - t.n * div_c_blocks.d);
    return t;
  }
};

// False when the launch cannot be numbered with 32-bit block indices. The backward cuts each
// column of tiles into strips until there are about target_blocks blocks (the tests lower it to
// get long strips on small tensors).
inline bool fill_item_grid(ItemGrid& g, bool backward, int64_t N, int64_t c_blocks, int64_t tiles_h,
                           int64_t tiles_w, int64_t target_blocks) {
  int64_t strips = tiles_h, strip_len = 1;
  if (backward && tiles_h > 0) {
    const int64_t columns = std::max<int64_t>(1, N * c_blocks * tiles_w);
    strips = std::min(tiles_h, ceil_div(target_blocks, columns));
    strips = std::max<int64_t>(1, std::min(strips, kMaxPartials / std::max<int64_t>(1, N * tiles_w)));
    strip_len = ceil_div(tiles_h, strips);
    strips = ceil_div(tiles_h, strip_len);
  }
  const int64_t items = N * c_blocks * strips * tiles_w;
  const int64_t partials = strips * tiles_w;
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  if (items > kMax || tiles_h > kMax || tiles_w > kMax || c_blocks > kMax) return false;
  g.tiles_w = static_cast<int>(tiles_w);
  g.tiles_h = static_cast<int>(tiles_h);
  g.strip_len = static_cast<int>(strip_len);
  g.strips = static_cast<int>(strips);
  g.c_blocks = static_cast<int>(c_blocks);
  g.items = static_cast<int>(items);
  g.partials = static_cast<int>(partials);
  g.div_tiles_w = FastDiv(static_cast<uint32_t>(std::max<int64_t>(1, tiles_w)));
  g.div_strips = FastDiv(static_cast<uint32_t>(std::max<int64_t>(1, strips)));
  g.div_c_blocks = FastDiv(static_cast<uint32_t>(std::max<int64_t>(1, c_blocks)));
  return true;
}

struct NchwPlan {
  ItemGrid grid;
  int threads;          // block size: the warps the tile's tr x twv threads need (at most kThreads)
  int twv, tw, tr, th;  // tr x twv threads compute a tile of th rows x tw = twv * V columns: forward
                        // th = tr * kNchwRows; backward th = tr * R - 2 (R = nchw_backward_rows:
                        // the dl rows, one more above and below the tile, are R per thread row)
  int rwv, rp, sw;      // loads: a shared row holds rwv = twv + 2 vectors (one of halo on each side) =
                        // sw elements; the block copies rp rows per pass
  bool chunked;         // tiles narrower than the row (tiles_w > 1): the backward's dl has halo columns
  FastDiv div_twv, div_rwv, div_rp;
  int smem_bytes;
  bool ok;              // false: too many tiles for 32-bit block numbering
};

// Tile of an NCHW launch for x of shape (N, C, H, W), elements of elem_bytes, compute type of
// acc_bytes. The widest rows fill a tile of at most kNchwMaxRowVecs vectors in equal parts.
inline NchwPlan nchw_plan(bool backward, int elem_bytes, int acc_bytes, int64_t N, int64_t C, int64_t H,
                          int64_t W, int64_t target_blocks = kTargetBlocks) {
  NchwPlan p{};
  const int V = 16 / elem_bytes, R = backward ? nchw_backward_rows(elem_bytes) : kNchwRows, extra = backward ? 2 : 0;
  const int64_t row_vecs = ceil_div(W, V);
  const int64_t chunks = ceil_div(row_vecs, kNchwMaxRowVecs);
  p.twv = static_cast<int>(std::max<int64_t>(1, ceil_div(row_vecs, std::max<int64_t>(1, chunks))));
  p.tw = p.twv * V;
  p.rwv = p.twv + 2;
  p.sw = p.rwv * V;
  const int64_t row_bytes = int64_t(p.sw) * elem_bytes;
  auto smem_for = [&](int64_t th) {
    return backward ? (2 * th + 6) * row_bytes + (th + 2) * int64_t(p.sw) * acc_bytes : (th + 2) * row_bytes;
  };
  // warps for tr thread rows (enough to copy a shared row per pass too)
  auto threads_for = [&](int64_t tr) {
    return std::min<int64_t>(kThreads, 32 * ceil_div(std::max<int64_t>(tr * p.twv, p.rwv), 32));
  };
  const int64_t budget = backward ? kBackwardSmemBudget : kForwardSmemBudget;
  int64_t tr_max = kThreads / p.twv;
  while (tr_max > 1 && smem_for(tr_max * R - extra) > budget) --tr_max;
  // The thread-row count with the shortest plane by a rough model: issue = every thread of the
  // tiles ~`instr` instructions per output it owns plus ~`setup` per block (decode, parameters,
  // the backward's reduction), at ~9 thread-instructions per byte of DRAM bandwidth (H100 and
  // A100 alike), against the bytes of the rows copied and written (halo rows outside the image
  // are not read). Ties: fewer bytes.
  const int64_t hx = backward ? 2 : 1, instr = backward ? 80 : 45, setup = backward ? 700 : 300;
  double best = -1, best_bytes = -1;
  for (int64_t tr = tr_max; tr >= 1; --tr) {
    const int64_t th = tr * R - extra, tiles = ceil_div(H, th), blocks = backward ? 1 : tiles;
    int64_t rows = tiles * (th + 2 * hx) - 2 * hx + H;  // x (or the forward's x) read, y / dx written
    if (backward) rows += tiles * (th + 2) - 2;           // dy read
    const double bytes = double(rows) * W * elem_bytes;
    const double issue = (double(tiles) * R * V * instr + double(blocks) * setup) * threads_for(tr) / 9.0;
    const double cost = std::max(issue, bytes);
    if (best < 0 || cost < best || (cost == best && bytes < best_bytes)) {
      best = cost;
      best_bytes = bytes;
      p.tr = static_cast<int>(tr);
    }
  }
  p.th = p.tr * R - extra;
  p.threads = static_cast<int>(threads_for(p.tr));
  p.rp = p.threads / p.rwv;
  const int64_t tiles_h = ceil_div(H, p.th);
  p.div_twv = FastDiv(static_cast<uint32_t>(p.twv));
  p.div_rwv = FastDiv(static_cast<uint32_t>(p.rwv));
  p.div_rp = FastDiv(static_cast<uint32_t>(p.rp));
  const int64_t reduce_bytes = backward ? int64_t(p.threads / 32) * 16 * acc_bytes : 0;  // block_reduce_plane
  p.smem_bytes = static_cast<int>(std::max(smem_for(p.th), reduce_bytes));
  const int64_t tiles_w = W > 0 ? ceil_div(row_vecs, p.twv) : 0;
  p.chunked = tiles_w > 1;
  p.ok = fill_item_grid(p.grid, backward, N, C, tiles_h, tiles_w, target_blocks);
  return p;
}

struct NhwcPlan {
  ItemGrid grid;
  int smem_bytes;
  bool ok;
};

// cb: channels per block (NhwcTile<scalar_t>::kForwardCB or kBackwardCB).
inline NhwcPlan nhwc_plan(bool backward, int cb, int elem_bytes, int acc_bytes, int64_t N, int64_t C, int64_t H,
                          int64_t W, int64_t target_blocks = kTargetBlocks) {
  constexpr int TH = NhwcTile<float>::kTH, TW = NhwcTile<float>::kTW;
  NhwcPlan p{};
  const int64_t pix1 = int64_t(TH + 2) * (TW + 2), pix2 = int64_t(TH + 4) * (TW + 4);
  const int64_t tiles = backward ? (pix2 + pix1) * cb * elem_bytes + pix1 * cb * acc_bytes : pix1 * cb * elem_bytes;
  const int64_t reduce_bytes = backward ? int64_t(kSlotStride) * 16 * acc_bytes : 0;
  p.smem_bytes = static_cast<int>(std::max(tiles, reduce_bytes));
  p.ok = fill_item_grid(p.grid, backward, N, ceil_div(C, cb), ceil_div(H, TH), ceil_div(W, TW), target_blocks);
  return p;
}

// ---------------------------------------------------------------------------------------------
// How a kernel reads a 4-D input (x or dy): a 64-bit origin per tile, 32-bit offsets inside it.

template <typename scalar_t>
struct TileSource {
  const scalar_t* data;
  int64_t sn, sc, sh, sw;  // element strides (any, 0 included)

  __device__ __forceinline__ const scalar_t* at(int64_t n, int64_t c, int64_t h, int64_t w) const {
    return data + n * sn + c * sc + h * sh + w * sw;
  }
};

// A tensor as the host sees it (sizes and strides in elements).
struct TensorDesc {
  const void* data;
  int64_t size[4];
  int64_t stride[4];
  int elem_bytes;
};

// The fast path needs unit stride and whole 16-byte vectors along the vector dimension (W for
// NCHW, C for NHWC), every other used stride a multiple of the vector, and a 16-byte aligned base.
inline bool can_copy_vectors(const TensorDesc& t, bool nhwc) {
  const int V = 16 / t.elem_bytes, inner = nhwc ? 1 : 3;
  if (t.stride[inner] != 1 || t.size[inner] % V != 0) return false;
  for (int d = 0; d < 4; ++d) {
    if (d != inner && t.size[d] > 1 && t.stride[d] % V != 0) return false;
  }
  return reinterpret_cast<uintptr_t>(t.data) % 16 == 0;
}

// True when every offset a tile takes from its origin fits in int32: rows x columns x channels
// around the origin, each span counted with its halo.
inline bool tile_offsets_fit(const TensorDesc& t, int64_t rows, int64_t cols, int64_t chans) {
  auto span = [](int64_t n, int64_t s) { return n * (s < 0 ? -s : s); };
  const int64_t reach = span(rows, t.stride[2]) + span(cols, t.stride[3]) + span(chans, t.stride[1]);
  return reach < std::numeric_limits<int32_t>::max();
}

template <typename scalar_t>
TileSource<scalar_t> tile_source(const TensorDesc& t) {
  return {static_cast<const scalar_t*>(t.data), t.stride[0], t.stride[1], t.stride[2], t.stride[3]};
}

}  // namespace cuda
}  // namespace lgf
