// Register windows over shared-memory tiles and the 3x3 stencils on them.
//
// NCHW: a thread computes V consecutive outputs of a row; its window of a tile row is the V + 2
// values around them (the vector, one value left and one right), read as one 16-byte vector
// plus two scalars and converted to T. Three row windows roll down as the thread walks its rows.
// NHWC: a thread holds a 3 x 3 window of one channel and rolls it along a row, one new column
// of three values per output.
#pragma once

#include <c10/util/BFloat16.h>

#include <cstring>
#include <type_traits>

#include "cuda/device_support.cuh"

namespace lgf {
namespace cuda {

// out[e] = c.v[e] converted to T. bfloat16 pairs to float take two instructions per 32-bit word
// (the low half shifted up, the high half masked: exactly the conversion) instead of the
// extract-and-shift the compiler emits per element.
template <int N, typename S, typename T>
__device__ __forceinline__ void convert_pack(const Pack<S, N>& c, T* out) {
  if constexpr (std::is_same<S, c10::BFloat16>::value && std::is_same<T, float>::value && N % 2 == 0) {
    uint32_t w[N / 2];
    std::memcpy(w, &c, sizeof(w));
#pragma unroll
    for (int k = 0; k < N / 2; ++k) {
      const uint32_t lo = w[k] << 16, hi = w[k] & 0xffff0000u;
      std::memcpy(out + 2 * k, &lo, 4);
      std::memcpy(out + 2 * k + 1, &hi, 4);
    }
  } else {
#pragma unroll
    for (int e = 0; e < N; ++e) out[e] = static_cast<T>(c.v[e]);
  }
}

// win[0 .. V+1] = p[-1 .. V] converted to T; p is aligned to V elements.
template <int V, typename S, typename T>
__device__ __forceinline__ void load_row_window(const S* p, T (&win)[V + 2]) {
  win[0] = static_cast<T>(p[-1]);
  convert_pack(load_pack<V>(p), win + 1);
  win[V + 1] = static_cast<T>(p[V]);
}

// v[0 .. N-1] = p[0 .. N-1] converted to T; p is aligned to N elements.
template <int N, typename S, typename T>
__device__ __forceinline__ void load_vector(const S* p, T (&v)[N]) {
  convert_pack(load_pack<N>(p), v);
}

// p[0 .. N-1] = v converted to S; p is aligned to N elements.
template <int N, typename S, typename T>
__device__ __forceinline__ void store_vector(S* p, const T (&v)[N]) {
  Pack<S, N> c;
#pragma unroll
  for (int e = 0; e < N; ++e) c.v[e] = static_cast<S>(v[e]);
  store_pack<N>(p, c);
}

// N outputs of a row to global memory: one aligned store on the fast path (rows of whole
// vectors), else element by element (the first nv are inside the tensor).
template <bool kVec, int N, typename S, typename T>
__device__ __forceinline__ void store_outputs(S* p, const T (&v)[N], int nv) {
  if constexpr (kVec) {
    store_vector<N>(p, v);
  } else {
#pragma unroll
    for (int j = 0; j < N; ++j) {
      if (j < nv) p[j] = static_cast<S>(v[j]);
    }
  }
}

// The 9 values around output j of three row windows: x[h-1+i, w-1+jj] at index i * 3 + jj.
template <int V, typename T>
__device__ __forceinline__ void gather3x3(const T (&a)[V + 2], const T (&b)[V + 2], const T (&c)[V + 2], int j,
                                          T (&p)[9]) {
#pragma unroll
  for (int k = 0; k < 3; ++k) {
    p[k] = a[j + k];
    p[3 + k] = b[j + k];
    p[6 + k] = c[j + k];
  }
}

// bias + sum_k f[k] * p[k]: the depthwise convolution at one pixel.
template <typename T>
__device__ __forceinline__ T conv3x3(const T (&f)[9], T bias, const T (&p)[9]) {
  T acc = bias;
#pragma unroll
  for (int k = 0; k < 9; ++k) acc = acc + f[k] * p[k];
  return acc;
}

// base + sum_k f[8 - k] * p[k]: the filter rotated by 180 degrees (dx from dl).
template <typename T>
__device__ __forceinline__ T conv3x3_rot(const T (&f)[9], T base, const T (&p)[9]) {
  T acc = base;
#pragma unroll
  for (int k = 0; k < 9; ++k) acc = acc + f[8 - k] * p[k];
  return acc;
}

}  // namespace cuda
}  // namespace lgf
