// The second (and last) kernel of the backward: turns the workspace of per-tile slot sums
// (backward_nchw.cuh / backward_nhwc.cuh) into dweight, dbias, dg, dgate and dgamma, in the
// parameters' dtype (dg in g's). Thread (c, slot) sums its slot over the partials of each n and
// then over n, in that fixed order, so the gradients are bitwise reproducible. The 16 slots of a
// channel are 16 neighbouring lanes of one warp.
//   dgamma = sum S_MIX     dbias = sum S_DL     dweight[k] = sum S_DW0+k
//   dgate  = (sum S_DZL_L, sum g S_DZL, sum S_DZL, sum S_DZG_L, sum g S_DZG, sum S_DZG)
//   dg[n]  = S_TSG[n] + b_l S_DZL[n] + b_g S_DZG[n]
#pragma once

#include "cuda/channel_params.cuh"
#include "cuda/tile_plan.cuh"

namespace lgf {
namespace cuda {

constexpr int kFinalizeChannels = kThreads / NUM_SLOTS;  // channels per block

template <typename scalar_t>
struct GradOutputs {
  void* dweight;  // (C, 9), parameter dtype
  void* dbias;    // (C)
  void* dgate;    // (6, C)
  void* dgamma;   // (C)
  scalar_t* dg;   // (N, C)
};

template <typename T>
__device__ __forceinline__ T sum_partials(const T* e, int count, int64_t step) {
  T v = T(0);
#pragma unroll 1
  for (int t = 0; t < count; ++t) v += e[t * step];
  return v;
}

template <typename scalar_t, typename T>
__global__ void __launch_bounds__(kThreads)
    finalize_kernel(const T* __restrict__ ws, ParamView<scalar_t> p, int N, int partials, GradOutputs<scalar_t> out) {
  const int s = threadIdx.x % NUM_SLOTS, c = blockIdx.x * kFinalizeChannels + threadIdx.x / NUM_SLOTS, C = p.C;
  const bool valid = c < C;  // no early return: every thread takes part in the shuffles
  const int cc = valid ? c : C - 1;
  const int64_t step = int64_t(C) * NUM_SLOTS;  // from one partial of (n, c, slot) to the next
  const T b_l = param_at<T>(p, p.gate, int64_t(C) + cc), b_g = param_at<T>(p, p.gate, 4 * int64_t(C) + cc);
  T total = T(0), g_weighted = T(0);
#pragma unroll 1
  for (int n = 0; n < N; ++n) {
    // (opaque: keeps the compiler from peeling the first n's sum out of the loop, which would
    // give this kernel a different loop shape per dtype in the static report)
    const T v = sum_partials(ws + int64_t(n) * partials * step + int64_t(cc) * NUM_SLOTS + s, opaque(partials), step);
    // the S_TSG thread takes S_DZL and S_DZG of the same (n, c) from its neighbouring lanes
    const T dzl = __shfl_down_sync(0xffffffffu, v, S_DZL - S_TSG);
    const T dzg = __shfl_down_sync(0xffffffffu, v, S_DZG - S_TSG);
    if (valid && s == S_TSG) out.dg[int64_t(n) * C + c] = static_cast<scalar_t>(v + b_l * dzl + b_g * dzg);
    total += v;
    g_weighted += static_cast<T>(p.g[int64_t(n) * C + cc]) * v;
  }
  if (!valid) return;
  if (s >= S_DW0) {
    store_param(p, out.dweight, int64_t(c) * 9 + (s - S_DW0), total);
    return;
  }
  switch (s) {
    case S_MIX: store_param(p, out.dgamma, c, total); break;
    case S_DL: store_param(p, out.dbias, c, total); break;
    case S_DZL_L: store_param(p, out.dgate, c, total); break;
    case S_DZL:
      store_param(p, out.dgate, int64_t(C) + c, g_weighted);
      store_param(p, out.dgate, 2 * int64_t(C) + c, total);
      break;
    case S_DZG_L: store_param(p, out.dgate, 3 * int64_t(C) + c, total); break;
    case S_DZG:
      store_param(p, out.dgate, 4 * int64_t(C) + c, g_weighted);
      store_param(p, out.dgate, 5 * int64_t(C) + c, total);
      break;
    default: break;  // S_TSG: dg is written per n above
  }
}

}  // namespace cuda
}  // namespace lgf
