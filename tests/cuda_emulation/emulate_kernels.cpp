// Host build of the CUDA kernels of csrc/cuda under cuda_emulation.h, with a C interface for
// ctypes (tests/test_cuda.py compiles this file with the host compiler and drives it from
// Python). The launch plans and tensor-access decisions are the wrappers' own (tile_plan.cuh);
// only the launch is emulated.
//
// dtype codes: 0 float32, 1 float64, 2 float16, 3 bfloat16. Parameters (weight, bias, gate,
// gamma) come in x's dtype or, with param_float = 1, in float32; g in x's dtype; the workspace in
// the compute type (float64 for code 1, float32 otherwise). Sizes and strides are in elements.
// Return value: 0 on success, otherwise an error message is copied into err.
#include "cuda_emulation.h"  // first: it defines what the device code needs on the host

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstring>
#include <exception>

#include "cuda/backward_nchw.cuh"
#include "cuda/backward_nhwc.cuh"
#include "cuda/finalize_kernel.cuh"
#include "cuda/forward_kernels.cuh"

namespace {

namespace lc = lgf::cuda;

struct Options {
  int reverse_threads;    // run the threads of a block in reverse order
  int reverse_blocks;     // run the blocks in reverse order
  int64_t target_blocks;  // backward strips (tile_plan.cuh); <= 0: the wrappers' default
  int64_t target() const { return target_blocks > 0 ? target_blocks : lc::kTargetBlocks; }
};

lc::TensorDesc desc(const void* data, const int64_t* size, const int64_t* stride, int elem_bytes) {
  lc::TensorDesc d{data, {}, {}, elem_bytes};
  for (int i = 0; i < 4; ++i) {
    d.size[i] = size[i];
    d.stride[i] = stride[i];
  }
  return d;
}

template <typename scalar_t>
lc::ParamView<scalar_t> param_view(const void* const* P, int64_t C, int param_float) {
  return {P[0], P[1], P[2], P[3], static_cast<const scalar_t*>(P[4]), static_cast<int>(C), param_float != 0};
}

template <typename F>
void run(int items, int threads, int smem_bytes, const Options& o, F kernel) {
  if (items <= 0) return;
  lgf_emu::launch(static_cast<unsigned>(items), static_cast<unsigned>(threads), smem_bytes, o.reverse_threads != 0,
                  o.reverse_blocks != 0, kernel);
}

template <typename scalar_t, typename T>
void forward(const lc::TensorDesc& xd, void* y, const lc::ParamView<scalar_t>& p, int nhwc, Options o) {
  const int64_t N = xd.size[0], C = xd.size[1], H = xd.size[2], W = xd.size[3];
  const auto x = lc::tile_source<scalar_t>(xd);
  const bool vec = lc::can_copy_vectors(xd, nhwc != 0);
  auto* yp = static_cast<scalar_t*>(y);
  if (nhwc) {
    const auto plan = lc::nhwc_plan(false, lc::NhwcTile<scalar_t>::kForwardCB, sizeof(scalar_t), sizeof(T), N, C, H, W);
    auto kernel = vec ? lc::forward_nhwc_kernel<scalar_t, T> : lc::forward_nhwc_strided_kernel<scalar_t, T>;
    run(plan.grid.items, lc::kThreads, plan.smem_bytes, o, [&] { kernel(x, yp, p, plan, H, W); });
  } else {
    const auto plan = lc::nchw_plan(false, sizeof(scalar_t), sizeof(T), N, C, H, W);
    auto kernel = vec ? lc::forward_nchw_kernel<scalar_t, T> : lc::forward_nchw_strided_kernel<scalar_t, T>;
    run(plan.grid.items, plan.threads, plan.smem_bytes, o, [&] { kernel(x, yp, p, plan, H, W); });
  }
}

template <typename scalar_t, typename T>
int backward_partials(int nhwc, int64_t N, int64_t C, int64_t H, int64_t W, int64_t target) {
  return nhwc ? lc::nhwc_plan(true, lc::NhwcTile<scalar_t>::kBackwardCB, sizeof(scalar_t), sizeof(T), N, C, H, W,
                              target)
                    .grid.partials
              : lc::nchw_plan(true, sizeof(scalar_t), sizeof(T), N, C, H, W, target).grid.partials;
}

template <typename scalar_t, typename T>
void backward(const lc::TensorDesc& dyd, const lc::TensorDesc& xd, void* dx, const lc::ParamView<scalar_t>& p,
              void* ws, const lc::GradOutputs<scalar_t>& grads, int nhwc, Options o) {
  const int64_t N = xd.size[0], C = xd.size[1], H = xd.size[2], W = xd.size[3];
  const auto x = lc::tile_source<scalar_t>(xd), dy = lc::tile_source<scalar_t>(dyd);
  const bool vec = lc::can_copy_vectors(xd, nhwc != 0) && lc::can_copy_vectors(dyd, nhwc != 0);
  auto* dxp = static_cast<scalar_t*>(dx);
  auto* wsp = static_cast<T*>(ws);
  int partials;
  if (nhwc) {
    const auto plan =
        lc::nhwc_plan(true, lc::NhwcTile<scalar_t>::kBackwardCB, sizeof(scalar_t), sizeof(T), N, C, H, W, o.target());
    auto kernel = vec ? lc::backward_nhwc_kernel<scalar_t, T> : lc::backward_nhwc_strided_kernel<scalar_t, T>;
    run(plan.grid.items, lc::kThreads, plan.smem_bytes, o, [&] { kernel(dy, x, dxp, p, wsp, plan, H, W); });
    partials = plan.grid.partials;
  } else {
    const auto plan = lc::nchw_plan(true, sizeof(scalar_t), sizeof(T), N, C, H, W, o.target());
    auto kernel = !vec           ? lc::backward_nchw_strided_kernel<scalar_t, T>
                  : plan.chunked ? lc::backward_nchw_wide_kernel<scalar_t, T>
                                 : lc::backward_nchw_kernel<scalar_t, T>;
    run(plan.grid.items, plan.threads, plan.smem_bytes, o, [&] { kernel(dy, x, dxp, p, wsp, plan, H, W); });
    partials = plan.grid.partials;
  }
  const int blocks = static_cast<int>(lc::ceil_div(C, lc::kFinalizeChannels));
  run(blocks, lc::kThreads, 0, o, [&] {
    lc::finalize_kernel<scalar_t, T>(wsp, p, static_cast<int>(N), partials, grads);
  });
}

int report(const std::exception& e, char* err, int errlen) {
  if (err && errlen > 0) {
    std::strncpy(err, e.what(), errlen - 1);
    err[errlen - 1] = 0;
  }
  return 1;
}

template <typename F>
void dispatch(int dtype, F&& f) {
  switch (dtype) {
    case 0: f(float(), float()); return;
    case 1: f(double(), double()); return;
    case 2: f(c10::Half(), float()); return;
    case 3: f(c10::BFloat16(), float()); return;
    default: throw std::invalid_argument("unknown dtype code");
  }
}

// Self-test kernels of the emulator itself. neighbour: thread k writes s[k] and reads s[k + 1].
__global__ void neighbour_kernel(int* out, bool barrier) {
  int* s = lc::dynamic_smem<int>();
  const unsigned k = threadIdx.x;
  s[k] = static_cast<int>(k);
  if (barrier) __syncthreads();  // without it the read below races with the neighbour's write
  out[k] = s[(k + 1) % lc::kThreads];
}

__global__ void divergent_kernel() {
  if (threadIdx.x < 32) __syncthreads();
}

}  // namespace

extern "C" {

// Number of threads that read their neighbour's value wrongly (0 expected with the barrier;
// > 0 without it, which shows that the emulation exposes a missing __syncthreads).
int lgf_emu_selftest_race(int barrier) {
  int out[lc::kThreads];
  lgf_emu::launch(1, lc::kThreads, lc::kThreads * sizeof(int), false, false,
                  [&] { neighbour_kernel(out, barrier != 0); });
  int wrong = 0;
  for (int k = 0; k < lc::kThreads; ++k) wrong += out[k] != (k + 1) % lc::kThreads;
  return wrong;
}

// 1 if a barrier reached by only some threads of a block is reported as an error.
int lgf_emu_selftest_divergence() {
  try {
    lgf_emu::launch(1, lc::kThreads, 0, false, false, [] { divergent_kernel(); });
  } catch (const std::exception&) {
    return 1;
  }
  return 0;
}

// Shared memory as a block finds it: every byte 0xff (so float reads of it are NaN), also after
// an earlier block wrote it.
int lgf_emu_selftest_smem_fill() {
  int bad = 0;
  lgf_emu::launch(2, 1, 64, false, false, [&] {
    auto* f = lc::dynamic_smem<float>();
    for (int i = 0; i < 16; ++i) bad += f[i] == f[i];  // false only for NaN
    for (int i = 0; i < 16; ++i) f[i] = 1.0f;
  });
  return bad;
}

// Wrong quotients or remainders of FastDiv (tile_plan.cuh) over divisors 1 .. max_d, each with
// numerators 0 .. 4095, around multiples of the divisor and just below 2^31.
int64_t lgf_emu_selftest_fast_div(uint32_t max_d) {
  int64_t wrong = 0;
  auto check = [&](const lc::FastDiv& f, uint32_t n) {
    wrong += f.div(n) != n / f.d || f.mod(n) != n % f.d;
  };
  for (uint32_t d = 1; d <= max_d; ++d) {
    const lc::FastDiv f(d);
    for (uint32_t n = 0; n < 4096; ++n) check(f, n);
    for (uint32_t k = 1; k < 64; ++k) {
      const uint64_t m = uint64_t(d) * (uint64_t(1) << (k % 31)) * k;
      for (int e = -1; e <= 1; ++e) {
        if (m + e < (uint64_t(1) << 31)) check(f, static_cast<uint32_t>(m + e));
      }
    }
    for (uint32_t n = (1u << 31) - 64; n < (1u << 31); ++n) check(f, n);
  }
  return wrong;
}

// The launch plan of tile_plan.cuh for x of (N, C, H, W) with elements of elem_bytes, as 12
// integers: threads, tile rows, tile columns, tiles_h, tiles_w, strip_len, strips, items,
// partials, shared-memory bytes, chunked (NCHW only), rows per pass (NCHW only). nhwc: the
// channels_last plan with its kernel's channel block. Lets the tests compare the Python mirror
// of the plans (benchmarks/static/cuda_plans.py) with the real ones.
void lgf_emu_plan(int nhwc, int backward, int elem_bytes, int64_t N, int64_t C, int64_t H, int64_t W,
                  int64_t* out) {
  const int acc = elem_bytes == 8 ? 8 : 4;
  if (nhwc) {
    const int cb = backward ? (elem_bytes == 8 ? 8 : elem_bytes == 2 ? 32 : 16) : 64 / elem_bytes;
    const auto p = lc::nhwc_plan(backward != 0, cb, elem_bytes, acc, N, C, H, W);
    const int64_t v[12] = {lc::kThreads, 16, 16, p.grid.tiles_h, p.grid.tiles_w, p.grid.strip_len, p.grid.strips,
                           p.grid.items, p.grid.partials, p.smem_bytes, 0, 0};
    std::copy(v, v + 12, out);
  } else {
    const auto p = lc::nchw_plan(backward != 0, elem_bytes, acc, N, C, H, W);
    const int64_t v[12] = {p.threads, p.th, p.tw, p.grid.tiles_h, p.grid.tiles_w, p.grid.strip_len, p.grid.strips,
                           p.grid.items, p.grid.partials, p.smem_bytes, p.chunked, p.rp};
    std::copy(v, v + 12, out);
  }
}

// Workspace entries of the backward launch plan (N * partials * C * 16, in the compute type).
int64_t lgf_emu_ws_entries(int dtype, int nhwc, int64_t N, int64_t C, int64_t H, int64_t W, int64_t target_blocks) {
  const Options o{0, 0, target_blocks};
  int64_t partials = 0;
  dispatch(dtype, [&](auto s, auto t) {
    partials = backward_partials<decltype(s), decltype(t)>(nhwc, N, C, H, W, o.target());
  });
  return N * partials * C * lgf::NUM_SLOTS;
}

int lgf_emu_forward(int dtype, int param_float, const void* x, const int64_t* size, const int64_t* sx, void* y,
                    const void* const* params, int nhwc, int reverse_threads, int reverse_blocks, char* err,
                    int errlen) {
  try {
    dispatch(dtype, [&](auto s, auto t) {
      using S = decltype(s);
      forward<S, decltype(t)>(desc(x, size, sx, sizeof(S)), y, param_view<S>(params, size[1], param_float), nhwc,
                              Options{reverse_threads, reverse_blocks, 0});
    });
  } catch (const std::exception& e) {
    return report(e, err, errlen);
  }
  return 0;
}

// grads: dweight, dbias, dgate, dgamma (parameter dtype), dg (x's dtype).
int lgf_emu_backward(int dtype, int param_float, const void* dy, const int64_t* sdy, const void* x,
                     const int64_t* size, const int64_t* sx, void* dx, const void* const* params, void* ws,
                     void* const* grads, int nhwc, int reverse_threads, int reverse_blocks, int64_t target_blocks,
                     char* err, int errlen) {
  try {
    dispatch(dtype, [&](auto s, auto t) {
      using S = decltype(s);
      const lc::GradOutputs<S> g{grads[0], grads[1], grads[2], grads[3], static_cast<S*>(grads[4])};
      backward<S, decltype(t)>(desc(dy, size, sdy, sizeof(S)), desc(x, size, sx, sizeof(S)), dx,
                               param_view<S>(params, size[1], param_float), ws, g, nhwc,
                               Options{reverse_threads, reverse_blocks, target_blocks});
    });
  } catch (const std::exception& e) {
    return report(e, err, errlen);
  }
  return 0;
}

}  // extern "C"
