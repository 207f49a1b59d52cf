// CPU backward of lgf::fused_backward. Saves nothing from the forward: l is recomputed row by
// row, dl is kept only for the three rows the rotated-filter convolution for dx needs, and the
// parameter-gradient sums go to a per-tile workspace in the compute dtype that is reduced in a
// fixed order (finalize_param_grads): the result does not depend on thread scheduling.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu/row_io.h"
#include "lgf_common.h"

namespace lgf {
namespace cpu {
namespace {

// partials: (N, C, NUM_SLOTS); one whole plane per task.
template <typename scalar_t, typename T>
void backward_nchw(const at::Tensor& dy, const at::Tensor& x, const ParamTensors& params, at::Tensor& dx,
                   at::Tensor& partials) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Wp = round_up(W, kRowAlign), Lp = Wp + 2;
  const auto X = strided4<scalar_t>(x);
  const auto DY = strided4<scalar_t>(dy);
  const auto DX = strided4<scalar_t>(dx);
  const ChannelParams<T> P = params.view<ChannelParams, T>();
  const RowKernels<T>& K = row_kernels<T>();
  T* part = partials.data_ptr<T>();
  at::parallel_for(0, N * C, 1, [&](int64_t begin, int64_t end) {
    // x rows (3, padded), dl rows (3, padded), dy rows (2), one dx row
    std::vector<T> buf(6 * Lp + 3 * Wp, T(0));
    T* xs = buf.data();
    T* dls = xs + 3 * Lp;
    T* dys = dls + 3 * Lp;
    T* out = dys + 2 * Wp;
    auto xrow = [&](int64_t h) { return xs + ((h + 1) % 3) * Lp; };
    auto dlrow = [&](int64_t h) { return dls + ((h + 1) % 3) * Lp; };
    auto dyrow = [&](int64_t h) { return dys + (h % 2) * Wp; };
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t n = plane / C, c = plane % C;
      const PlaneCoef<T> p = P.plane(n, c);
      T* acc = part + plane * NUM_SLOTS;
      std::fill(acc, acc + NUM_SLOTS, T(0));
      std::fill(dls, dls + 3 * Lp, T(0));  // dl row -1 must be zero
      load_plane_row(X, n, c, -1, H, W, xrow(-1));
      load_plane_row(X, n, c, 0, H, W, xrow(0));
      for (int64_t h = 0; h <= H; ++h) {
        if (h < H) {
          load_plane_row(X, n, c, h + 1, H, W, xrow(h + 1));
          gather(DY.at(n, c, h, 0), DY.sW, W, dyrow(h), 1);
          K.nchw_backward_dl(xrow(h - 1), xrow(h), xrow(h + 1), dyrow(h), p, dlrow(h), acc, W);
        } else {
          std::fill(dlrow(H), dlrow(H) + Lp, T(0));
        }
        if (h >= 1) {  // dx of row h - 1 needs dl rows h - 2, h - 1, h
          K.nchw_backward_dx(dlrow(h - 2), dlrow(h - 1), dlrow(h), dyrow(h - 1), p, out, Wp);
          scatter(out, 1, W, DX.at(n, c, h - 1, 0), DX.sW);
        }
      }
    }
  });
}

// partials: (N, nHB, NUM_SLOTS, C); one (n, channel block, row block) tile per task. A tile
// recomputes dl on the rows just above and below it (needed for dx) without summing them.
template <typename scalar_t, typename T>
void backward_nhwc(const at::Tensor& dy, const at::Tensor& x, const ParamTensors& params, at::Tensor& dx,
                   at::Tensor& partials) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const NhwcTiling tiling(C, H, NhwcTiling::kBackwardBlockH);
  const auto X = strided4<scalar_t>(x);
  const auto DY = strided4<scalar_t>(dy);
  const auto DX = strided4<scalar_t>(dx);
  const ChannelParams<T> P = params.view<ChannelParams, T>();
  const RowKernels<T>& K = row_kernels<T>();
  T* part = partials.data_ptr<T>();
  at::parallel_for(0, tiling.tasks(N), 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const auto [n, hbi, c0, cb, Cp, h0, h1] = tiling.tile(task);
      const int64_t Lp = (W + 2) * Cp, Up = W * Cp;
      BlockCoefStorage<T> coef(P, n, c0, cb, Cp);
      std::vector<T> buf(6 * Lp + 3 * Up + 2 * NUM_SLOTS * Cp, T(0));
      T* xs = buf.data();
      T* dls = xs + 3 * Lp;
      T* dys = dls + 3 * Lp;
      T* out = dys + 2 * Up;
      T* acc = out + Up;                  // [NUM_SLOTS][Cp], rows h0..h1-1
      T* halo_acc = acc + NUM_SLOTS * Cp;  // discarded sums of the halo rows
      auto xrow = [&](int64_t h) { return xs + ((h + 3) % 3) * Lp; };
      auto dlrow = [&](int64_t h) { return dls + ((h + 3) % 3) * Lp; };
      auto dyrow = [&](int64_t h) { return dys + ((h + 2) % 2) * Up; };
      load_block_row(X, n, c0, cb, Cp, h0 - 2, H, W, xrow(h0 - 2));
      load_block_row(X, n, c0, cb, Cp, h0 - 1, H, W, xrow(h0 - 1));
      for (int64_t h = h0 - 1; h <= h1; ++h) {
        // dl row h (zero outside the image)
        if (h >= 0 && h < H) {
          load_block_row(X, n, c0, cb, Cp, h + 1, H, W, xrow(h + 1));
          load_block_row_unpadded(DY, n, c0, cb, Cp, h, W, dyrow(h));
          T* sums = (h >= h0 && h < h1) ? acc : halo_acc;
          K.nhwc_backward_dl(xrow(h - 1), xrow(h), xrow(h + 1), dyrow(h), coef.coef, dlrow(h), sums, W, Cp);
        } else {
          load_block_row(X, n, c0, cb, Cp, h + 1, H, W, xrow(h + 1));
          std::fill(dlrow(h), dlrow(h) + Lp, T(0));
        }
        if (h - 1 >= h0) {  // dx row h - 1 needs dl rows h - 2, h - 1, h
          K.nhwc_backward_dx(dlrow(h - 2), dlrow(h - 1), dlrow(h), dyrow(h - 1), coef.coef, out, W, Cp);
          store_block_row(out, cb, Cp, DX, n, c0, h - 1, W);
        }
      }
      T* dst = part + (n * tiling.nHB + hbi) * NUM_SLOTS * C;
      for (int s = 0; s < NUM_SLOTS; ++s)
        for (int64_t cc = 0; cc < cb; ++cc) dst[s * C + c0 + cc] = acc[s * Cp + cc];
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> fused_backward_cpu(
    const at::Tensor& dy, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
    const at::Tensor& g, const at::Tensor& gate, const at::Tensor& gamma) {
  check_fused_inputs(x, weight, bias, g, gate, gamma);
  check_grad_output(dy, x);
  TORCH_CHECK(x.device().is_cpu(), "lgf: fused_backward CPU kernel got x on ", x.device());
  const bool cl = use_channels_last(x);
  const auto acc = acc_type_of(x);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2);
  at::Tensor dx = at::empty(x.sizes(), x.options().memory_format(cl ? at::MemoryFormat::ChannelsLast
                                                                    : at::MemoryFormat::Contiguous));
  at::Tensor partials;  // (N, C, NUM_SLOTS) in the compute dtype
  if (dx.numel() == 0) {
    partials = at::zeros({N, C, NUM_SLOTS}, x.options().dtype(acc));
  } else {
    const ParamTensors params(weight, bias, g, gate, gamma, acc);
    const int64_t nHB = NhwcTiling(C, H, NhwcTiling::kBackwardBlockH).nHB;
    partials = cl ? at::empty({N, nHB, NUM_SLOTS, C}, x.options().dtype(acc))
                  : at::empty({N, C, NUM_SLOTS}, x.options().dtype(acc));
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lgf_fused_backward_cpu", [&] {
      using T = acc_t<scalar_t>;
      if (cl) {
        backward_nhwc<scalar_t, T>(dy, x, params, dx, partials);
      } else {
        backward_nchw<scalar_t, T>(dy, x, params, dx, partials);
      }
    });
    if (cl) partials = partials.sum(1).transpose(1, 2).contiguous();
  }
  auto [dweight, dbias, dg, dgate, dgamma] = finalize_param_grads(partials, weight, g, gate);
  return {dx, dweight, dbias, dg, dgate, dgamma};
}

}  // namespace

TORCH_LIBRARY_IMPL(lgf, CPU, m) { m.impl("fused_backward", &fused_backward_cpu); }

}  // namespace cpu
}  // namespace lgf
