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

// One kernel call per plane. fp32/fp64 planes with unit column stride are read and written in
// place; other dtypes and strides go through compute-type buffers of a block of rows (plus the
// row above and below it), converted on the way in and out.
template <typename scalar_t, typename T>
void forward_nchw(const at::Tensor& x, const ParamTensors& params, at::Tensor& y) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const auto X = strided4<scalar_t>(x);
  const auto Y = strided4<scalar_t>(y);  // contiguous (allocated so)
  const bool in_place = std::is_same<scalar_t, T>::value && X.sW == 1;
  const int64_t block = in_place ? H : std::min(H, std::max<int64_t>(1, 8192 / W));
  const ChannelParams<T> P = params.view<ChannelParams, T>();
  const RowKernels<T>& K = row_kernels<T>();
  at::parallel_for(0, N * C, 1, [&](int64_t begin, int64_t end) {
    const std::vector<T> zeros(W, T(0));
    std::vector<T> in(in_place ? 0 : (block + 2) * W), out(in_place ? 0 : block * W);
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t n = plane / C, c = plane % C;
      const PlaneCoef<T> p = P.plane(n, c);
      if (in_place) {
        const T* x0 = reinterpret_cast<const T*>(X.at(n, c, 0, 0));
        K.nchw_forward(x0, X.sH, H, zeros.data(), zeros.data(), W, p, reinterpret_cast<T*>(Y.at(n, c, 0, 0)), W);
        continue;
      }
      for (int64_t h0 = 0; h0 < H; h0 += block) {
        const int64_t rows = std::min(block, H - h0);
        for (int64_t r = -1; r <= rows; ++r) {
          if (h0 + r >= 0 && h0 + r < H) gather(X.at(n, c, h0 + r, 0), X.sW, W, in.data() + (r + 1) * W, 1);
        }
        const T* above = h0 > 0 ? in.data() : zeros.data();
        const T* below = h0 + rows < H ? in.data() + (rows + 1) * W : zeros.data();
        K.nchw_forward(in.data() + W, W, rows, above, below, W, p, out.data(), W);
        for (int64_t r = 0; r < rows; ++r) scatter(out.data() + r * W, 1, W, Y.at(n, c, h0 + r, 0), 1);
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
