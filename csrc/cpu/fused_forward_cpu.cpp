// CPU forward of lgf::fused_forward: one pass over x, rows loaded into padded compute-type
// buffers, y written once. NCHW (and arbitrary strides) work plane by plane; channels_last
// works on (n, block of channels, block of rows) tiles so that vectors run over channels.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu/row_io.h"
#include "lgf_common.h"

namespace lgf {
namespace cpu {
namespace {

template <typename scalar_t, typename T>
void forward_nchw(const at::Tensor& x, const ParamTensors& params, at::Tensor& y) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Wp = round_up(W, kRowAlign), Lp = Wp + 2;
  const auto X = strided4<scalar_t>(x);
  const auto Y = strided4<scalar_t>(y);
  const ChannelParams<T> P = params.view<ChannelParams, T>();
  const RowKernels<T>& K = row_kernels<T>();
  at::parallel_for(0, N * C, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> buf(3 * Lp + Wp, T(0));
    T* out = buf.data() + 3 * Lp;
    auto slot = [&](int64_t h) { return buf.data() + ((h + 1) % 3) * Lp; };  // row h, h in [-1, H]
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t n = plane / C, c = plane % C;
      const PlaneCoef<T> p = P.plane(n, c);
      load_plane_row(X, n, c, -1, H, W, slot(-1));
      load_plane_row(X, n, c, 0, H, W, slot(0));
      for (int64_t h = 0; h < H; ++h) {
        load_plane_row(X, n, c, h + 1, H, W, slot(h + 1));
        K.nchw_forward(slot(h - 1), slot(h), slot(h + 1), p, out, Wp);
        scatter(out, 1, W, Y.at(n, c, h, 0), Y.sW);
      }
    }
  });
}

template <typename scalar_t, typename T>
void forward_nhwc(const at::Tensor& x, const ParamTensors& params, at::Tensor& y) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const NhwcTiling tiling(C, H);
  const auto X = strided4<scalar_t>(x);
  const auto Y = strided4<scalar_t>(y);
  const ChannelParams<T> P = params.view<ChannelParams, T>();
  const RowKernels<T>& K = row_kernels<T>();
  at::parallel_for(0, tiling.tasks(N), 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const auto [n, hbi, c0, cb, Cp, h0, h1] = tiling.tile(task);
      const int64_t Lp = (W + 2) * Cp;
      BlockCoefStorage<T> coef(P, n, c0, cb, Cp);
      std::vector<T> buf(3 * Lp + W * Cp, T(0));
      T* out = buf.data() + 3 * Lp;
      auto slot = [&](int64_t h) { return buf.data() + ((h + 3) % 3) * Lp; };
      load_block_row(X, n, c0, cb, Cp, h0 - 1, H, W, slot(h0 - 1));
      load_block_row(X, n, c0, cb, Cp, h0, H, W, slot(h0));
      for (int64_t h = h0; h < h1; ++h) {
        load_block_row(X, n, c0, cb, Cp, h + 1, H, W, slot(h + 1));
        K.nhwc_forward(slot(h - 1), slot(h), slot(h + 1), coef.coef, out, W, Cp);
        store_block_row(out, cb, Cp, Y, n, c0, h, W);
      }
    }
  });
}

at::Tensor fused_forward_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                             const at::Tensor& g, const at::Tensor& gate, const at::Tensor& gamma) {
  check_fused_inputs(x, weight, bias, g, gate, gamma);
  TORCH_CHECK(x.device().is_cpu(), "lgf: fused_forward CPU kernel got x on ", x.device());
  const bool cl = use_channels_last(x);
  at::Tensor y = at::empty(x.sizes(), x.options().memory_format(cl ? at::MemoryFormat::ChannelsLast
                                                                   : at::MemoryFormat::Contiguous));
  if (y.numel() == 0) return y;
  const ParamTensors params(weight, bias, g, gate, gamma, acc_type_of(x));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lgf_fused_forward_cpu", [&] {
    using T = acc_t<scalar_t>;
    if (cl) {
      forward_nhwc<scalar_t, T>(x, params, y);
    } else {
      forward_nchw<scalar_t, T>(x, params, y);
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(lgf, CPU, m) { m.impl("fused_forward", &fused_forward_cpu); }

}  // namespace cpu
}  // namespace lgf
