// CUDA kernel of lgf::fused_backward (kernels in backward_kernels.cuh). x and dy are read through
// their strides (no copies; a stride-0 dy from .sum().backward() is read as is); dx is allocated
// like the forward's y. The kernels write per-(n, c, strip of tiles) partial sums to a workspace
// in the compute dtype; a sum over its tile dimension (a fixed-order ATen reduction) gives the
// (N, C, NUM_SLOTS) partials that finalize_param_grads turns into the parameter gradients. No
// atomics anywhere: the gradients are bitwise reproducible.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "cuda/backward_kernels.cuh"
#include "cuda/launch_host.h"
#include "lgf_common.h"

namespace lgf {
namespace cuda {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> fused_backward_cuda(
    const at::Tensor& dy, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
    const at::Tensor& g, const at::Tensor& gate, const at::Tensor& gamma) {
  check_fused_inputs(x, weight, bias, g, gate, gamma);
  check_grad_output(dy, x);
  TORCH_CHECK(x.is_cuda(), "lgf: fused_backward CUDA kernel got x on ", x.device());
  c10::cuda::CUDAGuard guard(x.device());
  const bool cl = use_channels_last(x);
  const auto acc = acc_type_of(x);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor dx = at::empty(x.sizes(), x.options().memory_format(cl ? at::MemoryFormat::ChannelsLast
                                                                    : at::MemoryFormat::Contiguous));
  at::Tensor partials;  // (N, C, NUM_SLOTS) in the compute dtype
  if (dx.numel() == 0) {
    partials = at::zeros({N, C, NUM_SLOTS}, x.options().dtype(acc));
  } else {
    const ParamTensors params(weight, bias, g, gate, gamma, acc);
    const Strides4 sdy = strides_of(dy), sx = strides_of(x), sdx = strides_of(dx);
    auto stream = c10::cuda::getCurrentCUDAStream();
    at::Tensor ws;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lgf_fused_backward_cuda", [&] {
      using T = acc_t<scalar_t>;
      const LaunchPlan plan = backward_plan<T>(cl, N, C, H, W);
      ws = at::empty({N * C, NUM_SLOTS, plan.ws_tiles()}, x.options().dtype(acc));
      const scalar_t* dyp = dy.const_data_ptr<scalar_t>();
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      scalar_t* dxp = dx.mutable_data_ptr<scalar_t>();
      T* wsp = ws.mutable_data_ptr<T>();
      if (cl) {
        backward_nhwc_kernel<scalar_t, T><<<plan.grid(), kThreads, 0, stream>>>(
            dyp, sdy, xp, sx, dxp, sdx, params.view<DevParams, T>(), wsp, H, W, plan);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      } else {
        backward_nchw_kernel<scalar_t, T><<<plan.grid(), kThreads, 0, stream>>>(
            dyp, sdy, xp, sx, dxp, sdx, params.view<DevParams, T>(), wsp, H, W, plan);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    });
    partials = ws.sum(2).view({N, C, NUM_SLOTS});  // fixed-order reduction over the tiles
  }
  auto [dweight, dbias, dg, dgate, dgamma] = finalize_param_grads(partials, weight, g, gate);
  return {dx, dweight, dbias, dg, dgate, dgamma};
}

}  // namespace

TORCH_LIBRARY_IMPL(lgf, CUDA, m) { m.impl("fused_backward", &fused_backward_cuda); }

}  // namespace cuda
}  // namespace lgf
