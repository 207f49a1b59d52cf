// The backward's per-channel partial sums (the PartialSlot sums of lgf_math.h): accumulated per
// thread in registers, then reduced over the block in a fixed order (no atomics), so the
// gradients are bitwise reproducible run to run.
#pragma once

#include "cuda/tile_plan.cuh"
#include "lgf_math.h"

namespace lgf {
namespace cuda {

// Adds one pixel's contributions when `take`; p = x around the pixel (p[i * 3 + j] =
// x[h - 1 + i, w - 1 + j]). Written as selects, which nvcc turns into predicated FFMAs rather
// than a branch around them.
template <typename T>
__device__ __forceinline__ void add_slots(T (&acc)[NUM_SLOTS], const PointGrad<T>& pg, T l, T dy, const T (&p)[9],
                                          bool take) {
  T v[NUM_SLOTS];
  v[S_MIX] = acc[S_MIX] + dy * pg.mix;
  v[S_TSG] = acc[S_TSG] + pg.tsg;
  v[S_DZL] = acc[S_DZL] + pg.dzl;
  v[S_DZG] = acc[S_DZG] + pg.dzg;
  v[S_DZL_L] = acc[S_DZL_L] + pg.dzl * l;
  v[S_DZG_L] = acc[S_DZG_L] + pg.dzg * l;
  v[S_DL] = acc[S_DL] + pg.dl;
#pragma unroll
  for (int k = 0; k < 9; ++k) v[S_DW0 + k] = acc[S_DW0 + k] + pg.dl * p[k];
#pragma unroll
  for (int s = 0; s < NUM_SLOTS; ++s) acc[s] = take ? v[s] : acc[s];
}

// Sums acc over all threads of a block that works on one channel (the NCHW kernels, whose
// block size varies per launch), in a fixed order: a butterfly over the lanes of each warp, then
// the warps' sums in warp order. red holds warps * NUM_SLOTS values; the caller guarantees that
// no thread reads that memory after the caller's last barrier (no barrier here waits for such
// readers). out(slot, value) is called once per slot. Every thread of the block must call this.
template <typename T, typename Out>
__device__ __forceinline__ void block_reduce_plane(const T (&acc)[NUM_SLOTS], T* red, int warps, Out out) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  T v[NUM_SLOTS];
#pragma unroll
  for (int s = 0; s < NUM_SLOTS; ++s) v[s] = acc[s];
#pragma unroll
  for (int off = 16; off >= 1; off >>= 1)
#pragma unroll
    for (int s = 0; s < NUM_SLOTS; ++s) v[s] += __shfl_xor_sync(0xffffffffu, v[s], off);
  if (lane == 0) {
#pragma unroll
    for (int s = 0; s < NUM_SLOTS; ++s) red[warp * NUM_SLOTS + s] = v[s];
  }
  __syncthreads();
  if (tid < NUM_SLOTS) {
    T t = red[tid];
#pragma unroll 1
    for (int w = 1; w < warps; ++w) t += red[w * NUM_SLOTS + tid];
    out(tid, t);
  }
}

// Sums acc over the threads of the block that share a channel: thread t works on channel
// t % CB (CB = 1: the whole block on one channel). Every thread puts its 16 sums into red
// (red[slot * kSlotStride + t]); then each (slot, channel) pair is summed by kThreads / (16 CB)
// neighbouring threads, each over 16 threads' values in thread order, and a butterfly over those
// lanes combines their results. out(slot, channel, value) is called once per pair. red may
// overlay the tiles: the first barrier waits for their readers. Every thread of the block must
// call this.
template <int CB, typename T, typename Out>
__device__ __forceinline__ void block_reduce_slots(const T (&acc)[NUM_SLOTS], T* red, Out out) {
  constexpr int kPairs = NUM_SLOTS * CB, kPerPair = kThreads / kPairs, kEach = kThreads / CB / kPerPair;
  static_assert(kThreads % kPairs == 0 && 32 % kPerPair == 0, "pairs must split the block and warps evenly");
  const int tid = threadIdx.x;
  __syncthreads();
#pragma unroll
  for (int s = 0; s < NUM_SLOTS; ++s) red[s * kSlotStride + tid] = acc[s];
  __syncthreads();
  const int part = tid % kPerPair, pair = tid / kPerPair, s = pair / CB, c = pair % CB;
  const T* col = red + s * kSlotStride + part * CB + c;
  T v = col[0];
#pragma unroll
  for (int i = 1; i < kEach; ++i) v += col[i * kPerPair * CB];
#pragma unroll
  for (int off = kPerPair / 2; off >= 1; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  if (part == 0) out(s, c, v);
}

}  // namespace cuda
}  // namespace lgf
