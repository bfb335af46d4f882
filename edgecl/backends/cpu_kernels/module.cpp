// The Python module edgecl.backends._cpu_kernels (see common.h).
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "common.h"
#include "mlx/version.h"

namespace nb = nanobind;

NB_MODULE(_cpu_kernels, m) {
  // The MLX these were compiled against: its primitives' layout must match the MLX loaded.
  m.attr("built_for_mlx") = std::to_string(MLX_VERSION_MAJOR) + "." +
                            std::to_string(MLX_VERSION_MINOR) + "." +
                            std::to_string(MLX_VERSION_PATCH);
  m.def("target_logprobs", &edgecl::target_logprobs, nb::arg("logits"), nb::arg("targets"),
        nb::arg("anchor") = nb::none());
  m.def("log_softmax", &edgecl::log_softmax, nb::arg("logits"));
  m.def("swiglu", &edgecl::swiglu, nb::arg("gate"), nb::arg("up"));
  m.def("causal_softmax", &edgecl::causal_softmax, nb::arg("scores"), nb::arg("queries"));
}
