// Schemas of the lgf ops, the shared input checks and the final gradient reduction.
// Device kernels are registered in csrc/cpu and csrc/cuda with TORCH_LIBRARY_IMPL.
#include <Python.h>
#include <ATen/ATen.h>
#include <torch/library.h>

#include "lgf_common.h"
#include "lgf_math.h"

extern "C" {
// Importing lgf_ops._C only has to load this library, which runs the registrations below.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

namespace lgf {

namespace {
bool is_floating(const at::Tensor& t) {
  auto s = t.scalar_type();
  return s == at::kFloat || s == at::kDouble || s == at::kHalf || s == at::kBFloat16;
}

void check_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK(is_floating(t), "lgf: ", name, " must be a floating tensor (float16, bfloat16, float32, float64), got ",
              t.scalar_type());
}
}  // namespace

void check_fused_inputs(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                        const at::Tensor& g, const at::Tensor& gate, const at::Tensor& gamma) {
  check_floating(x, "x");
  check_floating(weight, "weight");
  check_floating(bias, "bias");
  check_floating(g, "g");
  check_floating(gate, "gate");
  check_floating(gamma, "gamma");
  TORCH_CHECK(x.dim() == 4, "lgf: x must be 4-D (N, C, H, W), got ", x.dim(), "-D");
  const int64_t N = x.size(0), C = x.size(1);
  TORCH_CHECK(weight.dim() == 4 && weight.size(0) == C && weight.size(1) == 1 && weight.size(2) == 3 &&
                  weight.size(3) == 3,
              "lgf: weight must have shape (", C, ", 1, 3, 3), got ", weight.sizes());
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == C, "lgf: bias must have shape (", C, ",), got ", bias.sizes());
  TORCH_CHECK(g.dim() == 2 && g.size(0) == N && g.size(1) == C, "lgf: g must have shape (", N, ", ", C, "), got ",
              g.sizes());
  TORCH_CHECK(gate.dim() == 2 && gate.size(0) == 6 && gate.size(1) == C, "lgf: gate must have shape (6, ", C,
              "), got ", gate.sizes());
  TORCH_CHECK(gamma.dim() == 1 && gamma.size(0) == C, "lgf: gamma must have shape (", C, ",), got ", gamma.sizes());
  for (const auto* t : {&weight, &bias, &g, &gate, &gamma}) {
    TORCH_CHECK(t->device() == x.device(), "lgf: all inputs must be on x's device ", x.device(), ", got one on ",
                t->device());
  }
  TORCH_CHECK(g.scalar_type() == x.scalar_type(), "lgf: g must have x's dtype ", x.scalar_type(), ", got ",
              g.scalar_type());
  const auto p = weight.scalar_type();
  TORCH_CHECK(bias.scalar_type() == p && gate.scalar_type() == p && gamma.scalar_type() == p,
              "lgf: weight, bias, gate and gamma must share one dtype");
  const bool low = x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16;
  TORCH_CHECK(p == x.scalar_type() || (p == at::kFloat && low), "lgf: parameters have dtype ", p, " but x has ",
              x.scalar_type(), "; they must match x, or be float32 when x is float16/bfloat16");
}

void check_grad_output(const at::Tensor& dy, const at::Tensor& x) {
  TORCH_CHECK(dy.sizes() == x.sizes(), "lgf: grad_output must have x's shape ", x.sizes(), ", got ", dy.sizes());
  TORCH_CHECK(dy.device() == x.device(), "lgf: grad_output must be on x's device");
  TORCH_CHECK(dy.scalar_type() == x.scalar_type(), "lgf: grad_output must have x's dtype ", x.scalar_type(),
              ", got ", dy.scalar_type());
}

at::ScalarType acc_type_of(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

bool use_channels_last(const at::Tensor& x) {
  return x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> finalize_param_grads(
    const at::Tensor& partials, const at::Tensor& weight, const at::Tensor& g, const at::Tensor& gate) {
  const auto acc = partials.scalar_type();
  const int64_t C = partials.size(1);
  auto S = [&](int slot) { return partials.select(2, slot); };  // (N, C)
  auto gate_acc = gate.to(acc);
  auto g_acc = g.to(acc);
  auto b_l = gate_acc.select(0, 1).unsqueeze(0);
  auto b_g = gate_acc.select(0, 4).unsqueeze(0);
  auto dg = S(S_TSG) + b_l * S(S_DZL) + b_g * S(S_DZG);
  auto dgate = at::stack({S(S_DZL_L).sum(0), (g_acc * S(S_DZL)).sum(0), S(S_DZL).sum(0), S(S_DZG_L).sum(0),
                          (g_acc * S(S_DZG)).sum(0), S(S_DZG).sum(0)},
                         0);
  auto dgamma = S(S_MIX).sum(0);
  auto dbias = S(S_DL).sum(0);
  auto dweight = partials.narrow(2, S_DW0, 9).sum(0).reshape({C, 1, 3, 3});
  const auto p = weight.scalar_type();
  return {dweight.to(p), dbias.to(p), dg.to(g.scalar_type()), dgate.to(p), dgamma.to(p)};
}

namespace cpu {
const char* simd_name_float();
}

namespace {
std::string cpu_simd() { return cpu::simd_name_float(); }
}  // namespace

TORCH_LIBRARY(lgf, m) {
  // Which float CPU kernels run now ("avx512", "avx2" or "portable"; see LGF_CPU_SIMD).
  m.def("cpu_simd() -> str", &cpu_simd);
  m.def("fused_forward(Tensor x, Tensor weight, Tensor bias, Tensor g, Tensor gate, Tensor gamma) -> Tensor");
  m.def(
      "fused_backward(Tensor grad_out, Tensor x, Tensor weight, Tensor bias, Tensor g, Tensor gate, Tensor gamma) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}

}  // namespace lgf
