// Shared pieces of the CUDA kernels of lgf::fused_forward / lgf::fused_backward: tile geometry
// and launch plans, strided tensor views, per-channel parameters, the 3x3 stencil on a
// shared-memory tile and the deterministic block reduction of the backward partial sums. The
// per-element math itself comes from lgf_math.h (the same code the CPU kernels run).
//
// No ATen here: this header and the kernel headers also compile as plain C++ under the CPU
// emulation of emulate/cuda_emulation.h, which the tests use to execute the device code.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "lgf_math.h"

namespace lgf {
namespace cuda {

constexpr int kThreads = 256;  // threads per block, every kernel
constexpr int kWarps = kThreads / 32;
constexpr int64_t kMaxBlocks = int64_t(1) << 20;  // grid cap; kernels loop over the remaining work

// Compute type: double for double tensors, float otherwise (fp16/bf16 are converted on load).
template <typename scalar_t>
using acc_t = std::conditional_t<std::is_same<scalar_t, double>::value, double, float>;

// NCHW kernels: one block = one TH x TW tile of one (n, c) plane; threads are 32 (along W) x 8.
constexpr int kNchwTH = 16;
constexpr int kNchwTW = 32;
constexpr int kNchwStrip = 4;  // backward: tile rows per block (their sums share one workspace entry)
static_assert(kThreads % kNchwTW == 0, "NCHW thread layout");

// Channels_last kernels: one block = a TH x TW pixel tile of a block of CB channels; threads are
// CB (along C, contiguous in memory) x kThreads / CB pixels. CB keeps a pixel's channel run at
// >= 64 bytes of compute type and the shared tiles under the 48 KB static limit.
constexpr int kNhwcTH = 8;
constexpr int kNhwcTW = 16;
constexpr int kNhwcStrip = 4;
template <typename T>
struct NhwcBlock {
  static constexpr int kForwardCB = sizeof(T) == 8 ? 16 : 32;
  static constexpr int kBackwardCB = sizeof(T) == 8 ? 8 : 16;
};

// Resident blocks per SM the backward kernels' register allocation must allow (float: at most
// 64 / 85 registers per thread; double, which mostly serves gradcheck, may use more).
template <typename T>
constexpr int kNchwBackwardMinBlocks = sizeof(T) == 8 ? 2 : 4;
template <typename T>
constexpr int kNhwcBackwardMinBlocks = sizeof(T) == 8 ? 1 : 3;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Grid of one kernel launch: the work items (tiles, or strips of tiles for the backward) and how
// they are numbered. Items are decoded as tw fastest, then tile row or strip, then channel
// (block), then n.
struct LaunchPlan {
  bool nhwc;
  int64_t c_blocks;  // channel blocks (NHWC) or C (NCHW)
  int64_t tiles_h, tiles_w;
  int64_t strips;  // backward: strips of tile rows per plane (forward: tiles_h)
  int64_t items;
  LGF_HD int64_t ws_tiles() const { return strips * tiles_w; }  // backward workspace entries per (n, c, slot)
  unsigned grid() const { return static_cast<unsigned>(std::min(items, kMaxBlocks)); }
};

template <typename T>
LaunchPlan forward_plan(bool nhwc, int64_t N, int64_t C, int64_t H, int64_t W) {
  LaunchPlan p;
  p.nhwc = nhwc;
  p.c_blocks = nhwc ? ceil_div(C, NhwcBlock<T>::kForwardCB) : C;
  p.tiles_h = ceil_div(H, nhwc ? kNhwcTH : kNchwTH);
  p.tiles_w = ceil_div(W, nhwc ? kNhwcTW : kNchwTW);
  p.strips = p.tiles_h;
  p.items = N * p.c_blocks * p.tiles_h * p.tiles_w;
  return p;
}

template <typename T>
LaunchPlan backward_plan(bool nhwc, int64_t N, int64_t C, int64_t H, int64_t W) {
  LaunchPlan p;
  p.nhwc = nhwc;
  p.c_blocks = nhwc ? ceil_div(C, NhwcBlock<T>::kBackwardCB) : C;
  p.tiles_h = ceil_div(H, nhwc ? kNhwcTH : kNchwTH);
  p.tiles_w = ceil_div(W, nhwc ? kNhwcTW : kNchwTW);
  p.strips = ceil_div(p.tiles_h, nhwc ? kNhwcStrip : kNchwStrip);
  p.items = N * p.c_blocks * p.strips * p.tiles_w;
  return p;
}

// Element strides of a 4-D tensor (any values, including 0 for expanded tensors).
struct Strides4 {
  int64_t n, c, h, w;
};

// The small parameter tensors, converted to the compute type and made contiguous by the wrapper.
template <typename T>
struct DevParams {
  const T* __restrict__ w;      // (C, 9), row-major taps i * 3 + j
  const T* __restrict__ bias;   // (C)
  const T* __restrict__ gate;   // (6, C): a_l, b_l, c_l, a_g, b_g, c_g
  const T* __restrict__ gamma;  // (C)
  const T* __restrict__ g;      // (N, C)
  int64_t C;

  __device__ __forceinline__ GateCoef<T> coef(int64_t n, int64_t c) const {
    return make_gate_coef(gate[c], gate[C + c], gate[2 * C + c], gate[3 * C + c], gate[4 * C + c],
                          gate[5 * C + c], gamma[c], g[n * C + c]);
  }
  __device__ __forceinline__ void filter(int64_t c, T (&f)[9]) const {
#pragma unroll
    for (int k = 0; k < 9; ++k) f[k] = w[c * 9 + k];
  }
};

// x[h, w] of one plane (base already offset to (n, c)), converted to T; zero outside the image.
template <typename T, typename scalar_t>
__device__ __forceinline__ T load_or_zero(const scalar_t* base, const Strides4& s, int64_t h, int64_t w,
                                          int64_t H, int64_t W) {
  return (h >= 0 && h < H && w >= 0 && w < W) ? static_cast<T>(base[h * s.h + w * s.w]) : T(0);
}

// sum_{i,j} f[i*3+j] * p[i*row + j*col]: the 3x3 stencil whose top-left tap is p (the same
// summation order as the CPU row kernels).
template <typename T>
__device__ __forceinline__ T stencil3x3(const T (&f)[9], const T* p, int row, int col) {
  T acc = f[0] * p[0] + f[1] * p[col] + f[2] * p[2 * col];
  acc = acc + f[3] * p[row] + f[4] * p[row + col] + f[5] * p[row + 2 * col];
  acc = acc + f[6] * p[2 * row] + f[7] * p[2 * row + col] + f[8] * p[2 * row + 2 * col];
  return acc;
}

// Same stencil with the filter rotated by 180 degrees (f[8 - k]): dx from dl.
template <typename T>
__device__ __forceinline__ T stencil3x3_rot(const T (&f)[9], const T* p, int row, int col) {
  T acc = f[8] * p[0] + f[7] * p[col] + f[6] * p[2 * col];
  acc = acc + f[5] * p[row] + f[4] * p[row + col] + f[3] * p[row + 2 * col];
  acc = acc + f[2] * p[2 * row] + f[1] * p[2 * row + col] + f[0] * p[2 * row + 2 * col];
  return acc;
}

// Adds one pixel's contributions to the PartialSlot sums. p is the top-left tap of the pixel's
// 3x3 input window (x[h-1, w-1]).
template <typename T>
__device__ __forceinline__ void add_slots(T (&acc)[NUM_SLOTS], const PointGrad<T>& pg, T l, T dy, const T* p, int row,
                                          int col) {
  acc[S_MIX] += dy * pg.mix;
  acc[S_TSG] += pg.tsg;
  acc[S_DZL] += pg.dzl;
  acc[S_DZG] += pg.dzg;
  acc[S_DZL_L] += pg.dzl * l;
  acc[S_DZG_L] += pg.dzg * l;
  acc[S_DL] += pg.dl;
#pragma unroll
  for (int i = 0; i < 3; ++i)
#pragma unroll
    for (int j = 0; j < 3; ++j) acc[S_DW0 + i * 3 + j] += pg.dl * p[i * row + j * col];
}

// Sums acc over the threads of the block that share a channel, in a fixed order (no atomics):
// thread t works on channel t % GROUP (GROUP divides 32; GROUP = 1: the whole block shares one
// channel). A butterfly over the lanes of each warp, then a sequential sum over the warps in
// shared memory red[kWarps * NUM_SLOTS * GROUP]. write(slot, channel, value) is called once per
// (slot, channel). Every thread of the block must call this (it synchronises the block).
template <int GROUP, typename T, typename Write>
__device__ __forceinline__ void block_reduce_slots(T (&acc)[NUM_SLOTS], T* red, Write write) {
  static_assert(GROUP >= 1 && GROUP <= 32 && (32 % GROUP) == 0, "GROUP must divide the warp");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int s = 0; s < NUM_SLOTS; ++s) {
    T v = acc[s];
#pragma unroll
    for (int off = 16; off >= GROUP; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane < GROUP) red[(warp * NUM_SLOTS + s) * GROUP + lane] = v;
  }
  __syncthreads();
  for (int t = threadIdx.x; t < NUM_SLOTS * GROUP; t += kThreads) {
    const int s = t / GROUP, ch = t % GROUP;
    T v = red[s * GROUP + ch];
    for (int w = 1; w < kWarps; ++w) v += red[(w * NUM_SLOTS + s) * GROUP + ch];
    write(s, ch, v);
  }
  __syncthreads();
}

}  // namespace cuda
}  // namespace lgf
