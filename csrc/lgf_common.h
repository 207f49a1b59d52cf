// Declarations shared by the CPU and CUDA implementations of lgf::fused_forward/backward.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>
#include <type_traits>

namespace lgf {

// Compute type of a kernel: double for double tensors, float otherwise (float16/bfloat16 are
// converted to float when read). acc_type_of below is the same rule at run time.
template <typename scalar_t>
using acc_t = std::conditional_t<std::is_same<scalar_t, double>::value, double, float>;

// TORCH_CHECKs on shapes, dtypes and devices. lgf_ops.lgf_fused validates its arguments first in
// Python (lgf_ops/_validate.py, with its own messages), so these fire when torch.ops.lgf.* is
// called directly; they check the same conditions, worded for the C++ op.
void check_fused_inputs(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                        const at::Tensor& g, const at::Tensor& gate, const at::Tensor& gamma);
void check_grad_output(const at::Tensor& dy, const at::Tensor& x);

// Compute dtype: float for fp16/bf16/fp32 inputs, double for fp64.
at::ScalarType acc_type_of(const at::Tensor& x);

// True when y/dx are produced channels_last (x is channels_last-contiguous and not also
// NCHW-contiguous); the same rule as output_memory_format in lgf_ops/_fake.py, which the fake
// (meta) kernels use.
bool use_channels_last(const at::Tensor& x);

// The small parameter tensors converted once to the compute dtype and made contiguous, for a
// kernel launch. view<View, T>() builds a backend's parameter view (an aggregate whose fields
// start with the pointers w (C, 9), bias (C), gate (6, C), gamma (C), g (N, C) and then C).
struct ParamTensors {
  at::Tensor w, bias, gate, gamma, g;
  ParamTensors(const at::Tensor& weight, const at::Tensor& bias_, const at::Tensor& g_, const at::Tensor& gate_,
               const at::Tensor& gamma_, at::ScalarType acc)
      : w(weight.to(acc).contiguous()),
        bias(bias_.to(acc).contiguous()),
        gate(gate_.to(acc).contiguous()),
        gamma(gamma_.to(acc).contiguous()),
        g(g_.to(acc).contiguous()) {}

  template <template <typename> class View, typename T>
  View<T> view() const {
    return {w.const_data_ptr<T>(),     bias.const_data_ptr<T>(), gate.const_data_ptr<T>(),
            gamma.const_data_ptr<T>(), g.const_data_ptr<T>(),    bias.size(0)};
  }
};

// Turns per-(n, c) partial sums (N, C, NUM_SLOTS) in the compute dtype into the gradients of
// (weight, bias, g, gate, gamma), in a fixed order of plain tensor ops (deterministic on both
// devices). Parameter gradients come back in weight's dtype, dg in g's dtype.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> finalize_param_grads(
    const at::Tensor& partials, const at::Tensor& weight, const at::Tensor& g,
    const at::Tensor& gate);

}  // namespace lgf
