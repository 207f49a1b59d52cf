// Host build of the CUDA kernels of csrc/cuda under cuda_emulation.h, with a C interface for
// ctypes (tests/test_cuda.py compiles this file with the host compiler and drives it from
// Python). The launch plans are the ones the CUDA wrappers use; only the launch is emulated.
//
// dtype codes: 0 float32, 1 float64, 2 float16, 3 bfloat16 (parameters and the workspace are in
// the compute type: float64 for code 1, float32 otherwise). Strides are in elements.
// Return value: 0 on success, otherwise an error message is copied into err.
#include "cuda/emulate/cuda_emulation.h"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstring>
#include <exception>

#include "cuda/backward_kernels.cuh"
#include "cuda/forward_kernels.cuh"

namespace {

using lgf::cuda::DevParams;
using lgf::cuda::LaunchPlan;
using lgf::cuda::Strides4;

struct Options {
  int64_t grid;  // blocks to launch; <= 0: the wrappers' choice (plan.grid())
  int reverse;   // run the threads of a block in reverse order
};

Strides4 strides(const int64_t* s) { return {s[0], s[1], s[2], s[3]}; }

unsigned grid_of(const LaunchPlan& plan, const Options& o) {
  const int64_t g = o.grid > 0 ? std::min<int64_t>(o.grid, plan.items) : plan.grid();
  return static_cast<unsigned>(g);
}

template <typename scalar_t, typename T>
void forward(const void* x, const int64_t* sx, void* y, const int64_t* sy, const void* const* params, int64_t N,
             int64_t C, int64_t H, int64_t W, int nhwc, Options o) {
  const auto* P = reinterpret_cast<const T* const*>(params);  // w, bias, gate, gamma, g
  const DevParams<T> p{P[0], P[1], P[2], P[3], P[4], C};
  const LaunchPlan plan = lgf::cuda::forward_plan<T>(nhwc != 0, N, C, H, W);
  const auto* xp = static_cast<const scalar_t*>(x);
  auto* yp = static_cast<scalar_t*>(y);
  const unsigned grid = grid_of(plan, o);
  const std::function<void()> body = [&] {
    if (nhwc) {
      lgf::cuda::forward_nhwc_kernel<scalar_t, T>(xp, strides(sx), yp, strides(sy), p, H, W, plan);
    } else {
      lgf::cuda::forward_nchw_kernel<scalar_t, T>(xp, strides(sx), yp, strides(sy), p, H, W, plan);
    }
  };
  for (unsigned b = 0; b < grid; ++b) lgf_emu::run_block(b, grid, lgf::cuda::kThreads, o.reverse != 0, body);
}

template <typename scalar_t, typename T>
void backward(const void* dy, const int64_t* sdy, const void* x, const int64_t* sx, void* dx, const int64_t* sdx,
              const void* const* params, void* ws, int64_t N, int64_t C, int64_t H, int64_t W, int nhwc,
              Options o) {
  const auto* P = reinterpret_cast<const T* const*>(params);
  const DevParams<T> p{P[0], P[1], P[2], P[3], P[4], C};
  const LaunchPlan plan = lgf::cuda::backward_plan<T>(nhwc != 0, N, C, H, W);
  const auto* dyp = static_cast<const scalar_t*>(dy);
  const auto* xp = static_cast<const scalar_t*>(x);
  auto* dxp = static_cast<scalar_t*>(dx);
  auto* wsp = static_cast<T*>(ws);
  const unsigned grid = grid_of(plan, o);
  const std::function<void()> body = [&] {
    if (nhwc) {
      lgf::cuda::backward_nhwc_kernel<scalar_t, T>(dyp, strides(sdy), xp, strides(sx), dxp, strides(sdx), p, wsp,
                                                   H, W, plan);
    } else {
      lgf::cuda::backward_nchw_kernel<scalar_t, T>(dyp, strides(sdy), xp, strides(sx), dxp, strides(sdx), p, wsp,
                                                   H, W, plan);
    }
  };
  for (unsigned b = 0; b < grid; ++b) lgf_emu::run_block(b, grid, lgf::cuda::kThreads, o.reverse != 0, body);
}

int report(const std::exception& e, char* err, int errlen) {
  if (err && errlen > 0) {
    std::strncpy(err, e.what(), errlen - 1);
    err[errlen - 1] = 0;
  }
  return 1;
}

template <typename F>
int dispatch(int dtype, F&& f) {
  switch (dtype) {
    case 0: f(float(), float()); return 0;
    case 1: f(double(), double()); return 0;
    case 2: f(c10::Half(), float()); return 0;
    case 3: f(c10::BFloat16(), float()); return 0;
    default: throw std::invalid_argument("unknown dtype code");
  }
}

// Self-test kernels of the emulator itself: thread k writes s[k] and reads s[k + 1].
__global__ void neighbour_kernel(int* out, bool barrier) {
  __shared__ int s[lgf::cuda::kThreads];
  const unsigned k = threadIdx.x;
  s[k] = -1;
  __syncthreads();
  s[k] = static_cast<int>(k);
  if (barrier) __syncthreads();  // without it the read below races with the neighbour's write
  out[k] = s[(k + 1) % lgf::cuda::kThreads];
}

__global__ void divergent_kernel() {
  if (threadIdx.x < 32) __syncthreads();
}

}  // namespace

extern "C" {

// Number of threads that read their neighbour's value wrongly (0 expected with the barrier;
// > 0 without it, which shows that the emulation exposes a missing __syncthreads).
int lgf_emu_selftest_race(int barrier) {
  int out[lgf::cuda::kThreads];
  lgf_emu::run_block(0, 1, lgf::cuda::kThreads, false, [&] { neighbour_kernel(out, barrier != 0); });
  int wrong = 0;
  for (int k = 0; k < lgf::cuda::kThreads; ++k) wrong += out[k] != (k + 1) % lgf::cuda::kThreads;
  return wrong;
}

// 1 if a barrier reached by only some threads of a block is reported as an error.
int lgf_emu_selftest_divergence() {
  try {
    lgf_emu::run_block(0, 1, lgf::cuda::kThreads, false, [] { divergent_kernel(); });
  } catch (const std::exception&) {
    return 1;
  }
  return 0;
}

// Workspace entries per (n, c, slot) of the backward launch plan (the tile dimension of ws).
int64_t lgf_emu_ws_tiles(int dtype, int nhwc, int64_t N, int64_t C, int64_t H, int64_t W) {
  return dtype == 1 ? lgf::cuda::backward_plan<double>(nhwc != 0, N, C, H, W).ws_tiles()
                    : lgf::cuda::backward_plan<float>(nhwc != 0, N, C, H, W).ws_tiles();
}

int lgf_emu_forward(int dtype, const void* x, const int64_t* sx, void* y, const int64_t* sy,
                    const void* const* params, int64_t N, int64_t C, int64_t H, int64_t W, int nhwc, int64_t grid,
                    int reverse, char* err, int errlen) {
  try {
    dispatch(dtype, [&](auto s, auto t) {
      forward<decltype(s), decltype(t)>(x, sx, y, sy, params, N, C, H, W, nhwc, Options{grid, reverse});
    });
  } catch (const std::exception& e) {
    return report(e, err, errlen);
  }
  return 0;
}

int lgf_emu_backward(int dtype, const void* dy, const int64_t* sdy, const void* x, const int64_t* sx, void* dx,
                     const int64_t* sdx, const void* const* params, void* ws, int64_t N, int64_t C, int64_t H,
                     int64_t W, int nhwc, int64_t grid, int reverse, char* err, int errlen) {
  try {
    dispatch(dtype, [&](auto s, auto t) {
      backward<decltype(s), decltype(t)>(dy, sdy, x, sx, dx, sdx, params, ws, N, C, H, W, nhwc,
                                         Options{grid, reverse});
    });
  } catch (const std::exception& e) {
    return report(e, err, errlen);
  }
  return 0;
}

}  // extern "C"
