// The few device primitives the kernels use beyond plain C++: dynamic shared memory, cp.async
// copies global -> shared with zero fill, 16-byte vector moves and the high half of a 32-bit
// product. Under nvcc they map to CUDA; in a host build they map to the CPU emulation of
// tests/cuda_emulation (which must be included first and defines LGF_CUDA_EMULATION), so the
// same kernel source runs in the tests.
#pragma once

#include <cstdint>
#include <cstring>

#if !defined(__CUDACC__) && !defined(LGF_CUDA_EMULATION)
#error "csrc/cuda kernels compile with nvcc, or on the host under tests/cuda_emulation/cuda_emulation.h"
#endif

namespace lgf {
namespace cuda {

// The block's dynamic shared memory (the launch sizes it; 16-byte aligned). The kernels use no
// static __shared__ arrays, so the emulation can fill all of it with NaN at every block start.
template <typename T>
__device__ __forceinline__ T* dynamic_smem() {
#if defined(__CUDACC__)
  extern __shared__ __align__(16) unsigned char lgf_dynamic_smem[];
  return reinterpret_cast<T*>(lgf_dynamic_smem);
#else
  return static_cast<T*>(lgf_emu::dynamic_smem());
#endif
}

// N elements moved as one access (N * sizeof(S) = 4, 8 or 16 bytes; larger packs are moved in
// 16-byte pieces), aligned to its size.
template <typename S, int N>
struct alignas(N * sizeof(S) >= 16 ? 16 : N * sizeof(S)) Pack {
  S v[N];
};

template <int N, typename S>
__device__ __forceinline__ Pack<S, N> load_pack(const S* p) {
#if defined(__CUDACC__)
  return *reinterpret_cast<const Pack<S, N>*>(p);
#else
  Pack<S, N> r;
  std::memcpy(&r, p, sizeof(r));
  return r;
#endif
}

template <int N, typename S>
__device__ __forceinline__ void store_pack(S* p, const Pack<S, N>& v) {
#if defined(__CUDACC__)
  *reinterpret_cast<Pack<S, N>*>(p) = v;
#else
  std::memcpy(p, &v, sizeof(v));
#endif
}

// Copies `bytes` (4, 8 or 16) from global src to shared dst without a register round trip, or
// writes zeros there when !valid: cp.async with a source size of 0, which reads nothing (src
// may then point anywhere). The copies are asynchronous until async_copy_wait_all(); the
// emulation copies at once.
template <int bytes>
__device__ __forceinline__ void async_copy(void* dst, const void* src, bool valid) {
  static_assert(bytes == 4 || bytes == 8 || bytes == 16, "cp.async copies 4, 8 or 16 bytes");
#if defined(__CUDACC__) && __CUDA_ARCH__ >= 800
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  const int n = valid ? bytes : 0;
  if constexpr (bytes == 16) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(n));
  } else {
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(s), "l"(src), "n"(bytes), "r"(n));
  }
#elif defined(__CUDACC__)
  struct alignas(bytes) Raw {
    unsigned char b[bytes];
  };
  *static_cast<Raw*>(dst) = valid ? *static_cast<const Raw*>(src) : Raw{};
#else
  lgf_emu::async_copy(dst, src, valid ? bytes : 0, bytes);
#endif
}

__device__ __forceinline__ void async_copy_wait_all() {
#if defined(__CUDACC__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}

// v, opaque to the optimiser: what is computed from it inside a loop stays in the loop (a few
// instructions per trip) instead of being hoisted out and kept live, or spilled, across the
// loop body. Used where register pressure is at the launch bound's limit.
__device__ __forceinline__ int opaque(int v) {
#if defined(__CUDACC__)
  int r;
  asm volatile("mov.b32 %0, %1;" : "=r"(r) : "r"(v));
  return r;
#else
  return v;
#endif
}

__host__ __device__ __forceinline__ uint32_t mulhi_u32(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

}  // namespace cuda
}  // namespace lgf
