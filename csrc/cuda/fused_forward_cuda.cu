// CUDA kernel of lgf::fused_forward (kernels in forward_kernels.cuh). x is read through its
// strides (no copy); y is allocated channels_last when use_channels_last(x), else
// NCHW-contiguous, and the kernel whose warps coalesce on that layout is launched.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "cuda/forward_kernels.cuh"
#include "cuda/launch_host.h"
#include "lgf_common.h"

namespace lgf {
namespace cuda {
namespace {

at::Tensor fused_forward_cuda(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                              const at::Tensor& g, const at::Tensor& gate, const at::Tensor& gamma) {
  check_fused_inputs(x, weight, bias, g, gate, gamma);
  TORCH_CHECK(x.is_cuda(), "lgf: fused_forward CUDA kernel got x on ", x.device());
  c10::cuda::CUDAGuard guard(x.device());
  const bool cl = use_channels_last(x);
  at::Tensor y = at::empty(x.sizes(), x.options().memory_format(cl ? at::MemoryFormat::ChannelsLast
                                                                   : at::MemoryFormat::Contiguous));
  if (y.numel() == 0) return y;
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const ParamTensors params(weight, bias, g, gate, gamma, acc_type_of(x));
  const Strides4 sx = strides_of(x), sy = strides_of(y);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lgf_fused_forward_cuda", [&] {
    using T = acc_t<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const LaunchPlan plan = forward_plan<T>(cl, N, C, H, W);
    if (cl) {
      forward_nhwc_kernel<scalar_t, T>
          <<<plan.grid(), kThreads, 0, stream>>>(xp, sx, yp, sy, params.view<DevParams, T>(), H, W, plan);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    } else {
      forward_nchw_kernel<scalar_t, T>
          <<<plan.grid(), kThreads, 0, stream>>>(xp, sx, yp, sy, params.view<DevParams, T>(), H, W, plan);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(lgf, CUDA, m) { m.impl("fused_forward", &fused_forward_cuda); }

}  // namespace cuda
}  // namespace lgf
