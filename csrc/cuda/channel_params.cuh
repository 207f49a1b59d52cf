// The per-channel parameters as the kernels read them: in their own dtype (x's, or float32 for
// float16/bfloat16 x), converted to the compute type T in registers, so the wrappers launch no
// conversion kernels. The wrappers pass contiguous tensors.
#pragma once

#include <type_traits>

#include "lgf_math.h"

namespace lgf {
namespace cuda {

template <typename scalar_t>
struct ParamView {
  const void* w;      // (C, 9): taps i * 3 + j
  const void* bias;   // (C)
  const void* gate;   // (6, C): a_l, b_l, c_l, a_g, b_g, c_g
  const void* gamma;  // (C)
  const scalar_t* g;  // (N, C)
  int C;
  bool float_params;  // weight, bias, gate and gamma are float32 (x is float16/bfloat16)
};

template <typename T, typename scalar_t>
__device__ __forceinline__ T param_at(const ParamView<scalar_t>& p, const void* base, int64_t i) {
  if constexpr (!std::is_same<scalar_t, T>::value) {
    if (p.float_params) return static_cast<T>(static_cast<const float*>(base)[i]);
  }
  return static_cast<T>(static_cast<const scalar_t*>(base)[i]);
}

template <typename T, typename scalar_t>
__device__ __forceinline__ void store_param(const ParamView<scalar_t>& p, void* base, int64_t i, T v) {
  if constexpr (!std::is_same<scalar_t, T>::value) {
    if (p.float_params) {
      static_cast<float*>(base)[i] = static_cast<float>(v);
      return;
    }
  }
  static_cast<scalar_t*>(base)[i] = static_cast<scalar_t>(v);
}

template <typename T>
struct ChannelParams {
  T f[9];  // depthwise taps
  T bias;
  Exp2GateCoef<T> k;  // each gate's exp(-z) is one FMA into exp2
};

template <typename T, typename scalar_t>
__device__ __forceinline__ ChannelParams<T> channel_params(const ParamView<scalar_t>& p, int n, int c) {
  ChannelParams<T> r;
#pragma unroll
  for (int i = 0; i < 9; ++i) r.f[i] = param_at<T>(p, p.w, int64_t(c) * 9 + i);
  r.bias = param_at<T>(p, p.bias, c);
  T gc[6];
#pragma unroll
  for (int i = 0; i < 6; ++i) gc[i] = param_at<T>(p, p.gate, int64_t(i) * p.C + c);
  const T gamma = param_at<T>(p, p.gamma, c);
  const T g = static_cast<T>(p.g[int64_t(n) * p.C + c]);
  r.k = exp2_gate_coef(make_gate_coef(gc[0], gc[1], gc[2], gc[3], gc[4], gc[5], gamma, g));
  return r;
}

}  // namespace cuda
}  // namespace lgf
