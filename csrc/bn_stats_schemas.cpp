// Schemas of the CPU kernels behind ddad::bn_stats_loss (the op itself is defined in Python,
// ddad_fast/ops/bn_stats.py, as a triton_op whose CPU path calls these). A plain list: at merge
// these lines move into the single TORCH_LIBRARY(ddad, m) block of csrc/ops.cpp.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(ddad, m) {
  m.def(
      "bn_stats_forward_cpu(Tensor x, Tensor running_mean, Tensor running_var)"
      " -> (Tensor loss, Tensor mean, Tensor var, Tensor dist)");
  m.def(
      "bn_stats_backward_cpu(Tensor grad, Tensor x, Tensor mean, Tensor var, Tensor dist,"
      " Tensor running_mean, Tensor running_var) -> Tensor");
}

// `from ddad_fast import _C` needs a module init; importing the library is what registers the
// ops. Weak, so that the init csrc/ops.cpp defines (strong) wins at link time after the merge.
extern "C" __attribute__((weak)) PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
