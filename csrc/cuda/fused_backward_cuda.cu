// CUDA kernels of lgf::fused_backward: two launches. The main kernel (backward_nchw.cuh /
// backward_nhwc.cuh) writes dx and per-tile slot sums into a workspace in the compute dtype;
// finalize_kernel.cuh turns those into dweight, dbias, dg, dgate and dgamma in a fixed order
// (no atomics: bitwise reproducible). x is read through its strides; dy too when it is in x's
// layout or has a zero stride (from .sum().backward(), read as is, not materialised), else it is
// first copied to x's layout (one more launch). The 16-byte instantiation runs when x and dy
// both allow it (can_copy_vectors). dx is allocated like the forward's y.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "cuda/backward_nchw.cuh"
#include "cuda/backward_nhwc.cuh"
#include "cuda/finalize_kernel.cuh"
#include "cuda/launch_host.h"
#include "lgf_common.h"

namespace lgf {
namespace cuda {
namespace {

using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

at::Tensor workspace(const at::Tensor& x, int64_t partials) {
  return at::empty({x.size(0) * partials * x.size(1) * NUM_SLOTS}, x.options().dtype(acc_type_of(x)));
}

// Launches the main kernel; returns the workspace and its partials per (n, c, slot).
template <typename scalar_t>
std::pair<at::Tensor, int> backward_main(const at::Tensor& dy, const at::Tensor& x, at::Tensor& dx,
                                         const KernelParams& params, bool cl, cudaStream_t stream) {
  using T = acc_t<scalar_t>;
  constexpr int CB = NhwcTile<scalar_t>::kBackwardCB;
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const NchwPlan nchw = cl ? NchwPlan{} : nchw_plan(true, sizeof(scalar_t), sizeof(T), N, C, H, W);
  const NhwcPlan nhwc = cl ? nhwc_plan(true, CB, sizeof(scalar_t), sizeof(T), N, C, H, W) : NhwcPlan{};
  check_sizes_fit(x, cl ? nhwc.ok : nchw.ok);
  const TileReach reach = cl ? nhwc_reach<scalar_t>(CB) : nchw_reach(nchw, kVecElems<scalar_t>);
  // held until the launch is enqueued: a copy made here must not go back to the allocator
  // (and into the workspace) before the kernel that reads it is queued
  const at::Tensor xk = readable_input(x, cl, reach, "x");
  const at::Tensor dyk = readable_input(grad_in_layout(dy, cl), cl, reach, "grad_output");
  const TensorDesc xd = desc_of(xk), dyd = desc_of(dyk);
  check_output_fits(dx, reach);
  const bool vec = can_copy_vectors(xd, cl) && can_copy_vectors(dyd, cl);
  const int partials = cl ? nhwc.grid.partials : nchw.grid.partials;
  at::Tensor ws = workspace(x, partials);
  const auto args = std::make_tuple(tile_source<scalar_t>(dyd), tile_source<scalar_t>(xd),
                                    dx.mutable_data_ptr<scalar_t>(), params.view<scalar_t>(), ws.mutable_data_ptr<T>());
  auto go = [&](auto kernel, int items, int threads, int smem, const auto& plan) {
    std::apply([&](auto... a) { launch(kernel, items, threads, smem, stream, a..., plan, int(H), int(W)); }, args);
  };
  if (cl) {
    go(vec ? backward_nhwc_kernel<scalar_t, T> : backward_nhwc_strided_kernel<scalar_t, T>, nhwc.grid.items,
       kThreads, nhwc.smem_bytes, nhwc);
  } else {
    auto kernel = !vec           ? backward_nchw_strided_kernel<scalar_t, T>
                  : nchw.chunked ? backward_nchw_wide_kernel<scalar_t, T>
                                 : backward_nchw_kernel<scalar_t, T>;
    go(kernel, nchw.grid.items, nchw.threads, nchw.smem_bytes, nchw);
  }
  return {ws, partials};
}

Grads fused_backward_cuda(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                          const at::Tensor& g, const at::Tensor& gate, const at::Tensor& gamma) {
  check_fused_inputs(x, weight, bias, g, gate, gamma);
  check_grad_output(dy, x);
  TORCH_CHECK(x.is_cuda(), "lgf: fused_backward CUDA kernel got x on ", x.device());
  c10::cuda::CUDAGuard guard(x.device());
  const bool cl = use_channels_last(x);
  const int64_t N = x.size(0), C = x.size(1);
  const auto popt = weight.options().memory_format(at::MemoryFormat::Contiguous);
  Grads out{at::empty(x.sizes(), x.options().memory_format(output_format(cl))), at::empty({C, 1, 3, 3}, popt),
            at::empty({C}, popt), at::empty({N, C}, g.options().memory_format(at::MemoryFormat::Contiguous)),
            at::empty({6, C}, popt), at::empty({C}, popt)};
  auto& [dx, dweight, dbias, dg, dgate, dgamma] = out;
  if (C == 0) return out;
  const KernelParams params(weight, bias, g, gate, gamma, x);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lgf_fused_backward_cuda", [&] {
    using T = acc_t<scalar_t>;
    auto [ws, partials] = dx.numel() > 0 ? backward_main<scalar_t>(dy, x, dx, params, cl, stream)
                                         : std::pair<at::Tensor, int>{workspace(x, 0), 0};
    const GradOutputs<scalar_t> grads{dweight.mutable_data_ptr(), dbias.mutable_data_ptr(), dgate.mutable_data_ptr(),
                                      dgamma.mutable_data_ptr(), dg.mutable_data_ptr<scalar_t>()};
    launch(finalize_kernel<scalar_t, T>, static_cast<int>(ceil_div(C, kFinalizeChannels)), kThreads, 0, stream,
           ws.const_data_ptr<T>(), params.view<scalar_t>(), static_cast<int>(N), partials, grads);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(lgf, CUDA, m) { m.impl("fused_backward", &fused_backward_cuda); }

}  // namespace cuda
}  // namespace lgf
