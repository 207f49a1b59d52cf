// Portable row kernels (any x86/ARM CPU; float and double) and the run-time kernel choice.
#include <cstdlib>
#include <cstring>

#include "cpu/row_kernels.h"

namespace {

// A one-lane "vector": the generic kernels compiled as plain scalar code.
template <typename T>
struct Lane {
  using Scalar = T;
  static constexpr int kWidth = 1;
  T v;
  Lane() = default;
  Lane(T x) : v(x) {}  // NOLINT: implicit broadcast, as for the SIMD types
  static Lane load(const T* p) { return Lane(*p); }
  void store(T* p) const { *p = v; }
  using Mask = bool;
  static Mask lanes(int64_t lo, int64_t hi) { return lo < hi; }
  static Lane load(const T* p, Mask m) { return Lane(m ? *p : T(0)); }
  void store(T* p, Mask m) const {
    if (m) *p = v;
  }
};
template <typename T>
inline Lane<T> zero_outside(Lane<T> a, bool m) { return Lane<T>(m ? a.v : T(0)); }

template <typename T>
inline Lane<T> operator+(Lane<T> a, Lane<T> b) { return Lane<T>(a.v + b.v); }
template <typename T>
inline Lane<T> operator-(Lane<T> a, Lane<T> b) { return Lane<T>(a.v - b.v); }
template <typename T>
inline Lane<T> operator*(Lane<T> a, Lane<T> b) { return Lane<T>(a.v * b.v); }
template <typename T>
inline Lane<T> operator/(Lane<T> a, Lane<T> b) { return Lane<T>(a.v / b.v); }
template <typename T>
inline Lane<T> operator-(Lane<T> a) { return Lane<T>(-a.v); }
template <typename T>
inline bool operator<(Lane<T> a, Lane<T> b) { return a.v < b.v; }
template <typename T>
inline Lane<T> lgf_exp(Lane<T> a) { return Lane<T>(lgf::lgf_exp(a.v)); }
template <typename T>
inline T hsum(Lane<T> a) { return a.v; }
// One lane: the neighbours are the previous and next values themselves.
template <typename T>
inline Lane<T> left_neighbors(Lane<T>, Lane<T> prev) { return prev; }
template <typename T>
inline Lane<T> right_neighbors(Lane<T>, Lane<T> next) { return next; }

#include "cpu/row_kernels_impl.h"

enum class Simd { kPortable = 0, kAvx2 = 1, kAvx512 = 2 };

Simd cpu_simd_support() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) return Simd::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Simd::kAvx2;
#endif
  return Simd::kPortable;
}

// The CPU's best level, capped by LGF_CPU_SIMD (read on every call: tests switch it).
Simd simd_in_use() {
  static const Simd supported = cpu_simd_support();
  Simd cap = Simd::kAvx512;
  if (const char* v = std::getenv("LGF_CPU_SIMD")) {
    if (std::strcmp(v, "portable") == 0) cap = Simd::kPortable;
    if (std::strcmp(v, "avx2") == 0) cap = Simd::kAvx2;
  }
  return static_cast<int>(cap) < static_cast<int>(supported) ? cap : supported;
}

}  // namespace

namespace lgf {
namespace cpu {

const RowKernels<float>& row_kernels_float() {
  static const RowKernels<float> portable = make_row_kernels<Lane<float>>();
  switch (simd_in_use()) {
    case Simd::kAvx512:
      return row_kernels_float_avx512();
    case Simd::kAvx2:
      return row_kernels_float_avx2();
    default:
      return portable;
  }
}

const RowKernels<double>& row_kernels_double() {
  static const RowKernels<double> portable = make_row_kernels<Lane<double>>();
  return portable;
}

const char* simd_name_float() {
  static const char* names[] = {"portable", "avx2", "avx512"};
  return names[static_cast<int>(simd_in_use())];
}

}  // namespace cpu
}  // namespace lgf
