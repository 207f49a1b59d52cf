// Host-side helpers of the CUDA wrappers (the parameter tensors: ParamTensors in lgf_common.h).
#pragma once

#include <ATen/core/Tensor.h>

#include "cuda/lgf_tile.cuh"
#include "lgf_common.h"

namespace lgf {
namespace cuda {

inline Strides4 strides_of(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

}  // namespace cuda
}  // namespace lgf
