// CPU forward of lgf::fused_forward: one pass over x, y written once. NCHW (and arbitrary
// strides) work plane by plane; channels_last works on (n, block of channels, block of rows)
// tiles so that vectors run over channels. fp32/fp64 tensors are read in place; other dtypes
// and strides are converted block by block into compute-type buffers.
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
        const auto x_at = [&](int64_t i) { return reinterpret_cast<const T*>(X.at(i / C, i % C, 0, 0)); };
        const auto y_at = [&](int64_t i) { return reinterpret_cast<T*>(Y.at(i / C, i % C, 0, 0)); };
        const bool last = plane + 1 == end;
        K.nchw_forward(x_at(plane), X.sH, H, zeros.data(), zeros.data(), W, p, y_at(plane), W,
                       x_at(last ? plane : plane + 1), y_at(last ? plane : plane + 1));
        continue;
      }
      for (int64_t h0 = 0; h0 < H; h0 += block) {
        const int64_t rows = std::min(block, H - h0);
        for (int64_t r = -1; r <= rows; ++r) {
          if (h0 + r >= 0 && h0 + r < H) gather(X.at(n, c, h0 + r, 0), X.sW, W, in.data() + (r + 1) * W, 1);
        }
        const T* above = h0 > 0 ? in.data() : zeros.data();
        const T* below = h0 + rows < H ? in.data() + (rows + 1) * W : zeros.data();
        K.nchw_forward(in.data() + W, W, rows, above, below, W, p, out.data(), W, in.data() + W, out.data());
        for (int64_t r = 0; r < rows; ++r) scatter(out.data() + r * W, 1, W, Y.at(n, c, h0 + r, 0), 1);
      }
    }
  });
}

// One kernel call per (n, channel block, row block) tile. fp32/fp64 channels_last tensors are read
// and written in place; other dtypes and strides go through compute-type buffers (the tile's rows
// plus the row above and below, W x Cp each).
template <typename scalar_t, typename T>
void forward_nhwc(const at::Tensor& x, const ParamTensors& params, at::Tensor& y) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const NhwcTiling tiling(C, H, NhwcTiling::kForwardBlockH);
  const auto X = strided4<scalar_t>(x);
  const auto Y = strided4<scalar_t>(y);  // channels_last (allocated so)
  const bool in_place = std::is_same<scalar_t, T>::value && X.sC == 1;
  const ChannelParams<T> P = params.view<ChannelParams, T>();
  const RowKernels<T>& K = row_kernels<T>();
  at::parallel_for(0, tiling.tasks(N), 1, [&](int64_t begin, int64_t end) {
    // the row outside the image: W pixels at the pixel stride the kernel reads with
    const std::vector<T> zeros(W * (in_place ? X.sW : NhwcTiling::kBlockC) + NhwcTiling::kBlockC, T(0));
    std::vector<T> in, out;
    if (!in_place) {
      in.resize((NhwcTiling::kForwardBlockH + 2) * W * NhwcTiling::kBlockC);
      out.resize(NhwcTiling::kForwardBlockH * W * NhwcTiling::kBlockC);
    }
    for (int64_t task = begin; task < end; ++task) {
      const auto [n, hbi, c0, cb, Cp, h0, h1] = tiling.tile(task);
      const int64_t rows = h1 - h0;
      const BlockCoefStorage<T> coef(P, n, c0, cb, Cp);
      if (in_place) {
        const auto at = [&](int64_t h) { return reinterpret_cast<const T*>(X.at(n, c0, h, 0)); };
        const NhwcRows<T> rs{at(h0), X.sH, X.sW, h0 > 0 ? at(h0 - 1) : zeros.data(), h1 < H ? at(h1) : zeros.data()};
        K.nhwc_forward(rs, rows, W, cb, Cp, coef.coef, reinterpret_cast<T*>(Y.at(n, c0, h0, 0)), Y.sH, Y.sW);
        continue;
      }
      const int64_t row = W * Cp;
      for (int64_t h = std::max<int64_t>(h0 - 1, 0); h < std::min(h1 + 1, H); ++h) {
        load_block_row_unpadded(X, n, c0, cb, Cp, h, W, in.data() + (h - h0 + 1) * row);
      }
      const NhwcRows<T> rs{in.data() + row, row, Cp, h0 > 0 ? in.data() : zeros.data(),
                           h1 < H ? in.data() + (rows + 1) * row : zeros.data()};
      K.nhwc_forward(rs, rows, W, Cp, Cp, coef.coef, out.data(), row, Cp);
      for (int64_t h = h0; h < h1; ++h) store_block_row(out.data() + (h - h0) * row, cb, Cp, Y, n, c0, h, W);
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
