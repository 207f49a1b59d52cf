// Host-side helpers of the CUDA wrappers: strides and the parameter tensors in the compute type.
#pragma once

#include <ATen/core/Tensor.h>

#include "cuda/lgf_tile.cuh"

namespace lgf {
namespace cuda {

inline Strides4 strides_of(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

// Owns the small parameter tensors converted to the compute dtype (contiguous) for a launch.
struct ParamTensors {
  at::Tensor w, bias, gate, gamma, g;
  ParamTensors(const at::Tensor& weight, const at::Tensor& bias_, const at::Tensor& g_, const at::Tensor& gate_,
               const at::Tensor& gamma_, at::ScalarType acc)
      : w(weight.to(acc).contiguous()),
        bias(bias_.to(acc).contiguous()),
        gate(gate_.to(acc).contiguous()),
        gamma(gamma_.to(acc).contiguous()),
        g(g_.to(acc).contiguous()) {}
  template <typename T>
  DevParams<T> view() const {
    return {w.const_data_ptr<T>(),     bias.const_data_ptr<T>(), gate.const_data_ptr<T>(),
            gamma.const_data_ptr<T>(), g.const_data_ptr<T>(),    bias.size(0)};
  }
};

}  // namespace cuda
}  // namespace lgf
