// CUDA kernel of lgf::fused_forward (forward_kernels.cuh): one launch. y is allocated
// channels_last when use_channels_last(x), else NCHW-contiguous, and the kernel whose warps
// coalesce on that layout runs: the 16-byte instantiation when x allows it (can_copy_vectors),
// else the element-wise one. x is read through its strides (copied only when a tile's int32
// offsets would overflow).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "cuda/forward_kernels.cuh"
#include "cuda/launch_host.h"
#include "lgf_common.h"

namespace lgf {
namespace cuda {
namespace {

template <typename scalar_t>
void forward_nchw(const at::Tensor& x, at::Tensor& y, const KernelParams& params, cudaStream_t stream) {
  using T = acc_t<scalar_t>;
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const NchwPlan plan = nchw_plan(false, sizeof(scalar_t), sizeof(T), N, C, H, W);
  check_sizes_fit(x, plan.ok);
  const TileReach reach = nchw_reach(plan, kVecElems<scalar_t>);
  const at::Tensor xk = readable_input(x, false, reach, "x");
  check_output_fits(y, reach);
  auto kernel = can_copy_vectors(desc_of(xk), false) ? forward_nchw_kernel<scalar_t, T>
                                                     : forward_nchw_strided_kernel<scalar_t, T>;
  launch(kernel, plan.grid.items, plan.threads, plan.smem_bytes, stream, tile_source<scalar_t>(desc_of(xk)),
         y.mutable_data_ptr<scalar_t>(), params.view<scalar_t>(), plan, static_cast<int>(H), static_cast<int>(W));
}

template <typename scalar_t>
void forward_nhwc(const at::Tensor& x, at::Tensor& y, const KernelParams& params, cudaStream_t stream) {
  using T = acc_t<scalar_t>;
  constexpr int CB = NhwcTile<scalar_t>::kForwardCB;
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const NhwcPlan plan = nhwc_plan(false, CB, sizeof(scalar_t), sizeof(T), N, C, H, W);
  check_sizes_fit(x, plan.ok);
  const TileReach reach = nhwc_reach<scalar_t>(CB);
  const at::Tensor xk = readable_input(x, true, reach, "x");
  check_output_fits(y, reach);
  auto kernel = can_copy_vectors(desc_of(xk), true) ? forward_nhwc_kernel<scalar_t, T>
                                                    : forward_nhwc_strided_kernel<scalar_t, T>;
  launch(kernel, plan.grid.items, kThreads, plan.smem_bytes, stream, tile_source<scalar_t>(desc_of(xk)),
         y.mutable_data_ptr<scalar_t>(), params.view<scalar_t>(), plan, static_cast<int>(H), static_cast<int>(W));
}

at::Tensor fused_forward_cuda(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                              const at::Tensor& g, const at::Tensor& gate, const at::Tensor& gamma) {
  check_fused_inputs(x, weight, bias, g, gate, gamma);
  TORCH_CHECK(x.is_cuda(), "lgf: fused_forward CUDA kernel got x on ", x.device());
  c10::cuda::CUDAGuard guard(x.device());
  const bool cl = use_channels_last(x);
  at::Tensor y = at::empty(x.sizes(), x.options().memory_format(output_format(cl)));
  if (y.numel() == 0) return y;
  const KernelParams params(weight, bias, g, gate, gamma, x);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lgf_fused_forward_cuda", [&] {
    if (cl) {
      forward_nhwc<scalar_t>(x, y, params, stream);
    } else {
      forward_nchw<scalar_t>(x, y, params, stream);
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(lgf, CUDA, m) { m.impl("fused_forward", &fused_forward_cuda); }

}  // namespace cuda
}  // namespace lgf
