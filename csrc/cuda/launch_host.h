// Host-side helpers of the CUDA wrappers: tensors as the kernels see them, the parameters in
// their own dtype, the copies the kernels need (only those) and the launch itself.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>

#include <utility>

#include "cuda/channel_params.cuh"
#include "cuda/tile_plan.cuh"
#include "lgf_common.h"

namespace lgf {
namespace cuda {

inline TensorDesc desc_of(const at::Tensor& t) {
  TensorDesc d{t.const_data_ptr(), {}, {}, static_cast<int>(t.element_size())};
  for (int i = 0; i < 4; ++i) {
    d.size[i] = t.size(i);
    d.stride[i] = t.stride(i);
  }
  return d;
}

inline at::MemoryFormat output_format(bool channels_last) {
  return channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// The kernels index a tile with int32 offsets from a 64-bit tile origin; this is how far a tile
// (halo included) reaches: rows, columns and channels around the origin.
struct TileReach {
  int64_t rows, cols, chans;
};

inline TileReach nchw_reach(const NchwPlan& p, int64_t vec) { return {p.th + 4, p.tw + 2 * vec, 0}; }

template <typename scalar_t>
TileReach nhwc_reach(int cb) {
  return {NhwcTile<scalar_t>::kTH + 4, NhwcTile<scalar_t>::kTW + 4, cb};
}

// Sizes the kernels number with 32-bit integers.
inline void check_sizes_fit(const at::Tensor& x, bool launch_ok) {
  for (int d = 0; d < 4; ++d) {
    TORCH_CHECK(x.size(d) <= INT32_MAX, "lgf: the CUDA kernels need every size of x below 2^31, got ", x.sizes());
  }
  TORCH_CHECK(launch_ok, "lgf: x of shape ", x.sizes(), " has more tiles than the CUDA kernels can number (2^31 - 1)");
}

// An input (x or dy) as the kernels may read it: as it is when every offset inside a tile fits
// in int32 (the kernels read any strides), else a copy in the output's layout.
inline at::Tensor readable_input(const at::Tensor& t, bool channels_last, TileReach r, const char* name) {
  if (tile_offsets_fit(desc_of(t), r.rows, r.cols, r.chans)) return t;
  at::Tensor c = t.contiguous(output_format(channels_last));
  TORCH_CHECK(tile_offsets_fit(desc_of(c), r.rows, r.cols, r.chans), "lgf: ", name, " of shape ", t.sizes(),
              " is too large for the CUDA kernels' 32-bit offsets inside a tile");
  return c;
}

inline void check_output_fits(const at::Tensor& out, TileReach r) {
  TORCH_CHECK(tile_offsets_fit(desc_of(out), r.rows, r.cols, r.chans), "lgf: an output of shape ", out.sizes(),
              " is too large for the CUDA kernels' 32-bit offsets inside a tile");
}

// dy in x's layout, so that its loads coalesce like x's: as it is when it already has that
// layout or has a zero stride (an expanded dy, e.g. from .sum().backward(), is read element by
// element through its strides rather than materialised), else a copy.
inline at::Tensor grad_in_layout(const at::Tensor& dy, bool channels_last) {
  if (dy.is_contiguous(output_format(channels_last))) return dy;
  for (int d = 0; d < 4; ++d) {
    if (dy.stride(d) == 0 && dy.size(d) > 1) return dy;
  }
  return dy.contiguous(output_format(channels_last));
}

// The parameters as the kernels read them: contiguous (a no-op for ordinary parameters) and in
// their own dtype, so no conversion kernel runs. Releasing these tensors right after the
// asynchronous launch is safe: the caching allocator reuses memory in stream order.
struct KernelParams {
  at::Tensor w, bias, gate, gamma, g;
  bool float_params;
  KernelParams(const at::Tensor& weight, const at::Tensor& bias_, const at::Tensor& g_, const at::Tensor& gate_,
               const at::Tensor& gamma_, const at::Tensor& x)
      : w(weight.contiguous()),
        bias(bias_.contiguous()),
        gate(gate_.contiguous()),
        gamma(gamma_.contiguous()),
        g(g_.contiguous()),
        float_params(weight.scalar_type() == at::kFloat && x.scalar_type() != at::kFloat) {}

  template <typename scalar_t>
  ParamView<scalar_t> view() const {
    return {w.const_data_ptr(), bias.const_data_ptr(), gate.const_data_ptr(), gamma.const_data_ptr(),
            g.const_data_ptr<scalar_t>(), static_cast<int>(bias.size(0)), float_params};
  }
};

// kernel<<<blocks, threads, smem_bytes, stream>>>(args...), allowing more than the default
// 48 KB of dynamic shared memory where the kernel needs it.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), int blocks, int threads, int smem_bytes, cudaStream_t stream,
            Args&&... args) {
  if (blocks <= 0) return;
  if (smem_bytes > 48 * 1024) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes));
  }
  kernel<<<blocks, threads, smem_bytes, stream>>>(std::forward<Args>(args)...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace lgf
