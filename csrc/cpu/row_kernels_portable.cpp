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
};

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
inline Lane<T> lgf_exp(Lane<T> a) { return Lane<T>(lgf::lgf_exp(a.v)); }
template <typename T>
inline T hsum(Lane<T> a) { return a.v; }

#include "cpu/row_kernels_impl.h"

bool cpu_has_avx2_fma() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool force_portable() {
  const char* v = std::getenv("LGF_CPU_SIMD");
  return v != nullptr && std::strcmp(v, "portable") == 0;
}

}  // namespace

namespace lgf {
namespace cpu {

const RowKernels<float>& row_kernels_float() {
  static const RowKernels<float> portable = make_row_kernels<Lane<float>>();
  static const bool avx2 = cpu_has_avx2_fma();
  if (avx2 && !force_portable()) return row_kernels_float_avx2();
  return portable;
}

const RowKernels<double>& row_kernels_double() {
  static const RowKernels<double> portable = make_row_kernels<Lane<double>>();
  return portable;
}

const char* simd_name_float() {
  return (cpu_has_avx2_fma() && !force_portable()) ? "avx2" : "portable";
}

}  // namespace cpu
}  // namespace lgf
