// Schemas of every ddad op, defined once. Each device registers its implementation in its own file
// with TORCH_LIBRARY_IMPL(ddad, <Device>, m); ddad_fast/ops/*.py registers fake tensors and autograd.
#include <Python.h>
#include <torch/library.h>

// `import ddad_fast._C` (ddad_fast/extension.py) loads this library, which runs the registrations
// below; the module itself is empty.
extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}

TORCH_LIBRARY(ddad, m) {
  // Mean absolute error mean(|t - s|) of two same-shape, same-dtype tensors (float32, bfloat16 or
  // float16; logits (N, C) or logit maps (N, C, H, W) in any memory format), accumulated in fp32.
  // Returns a 0-dim float32 tensor.
  m.def("l1_discrepancy(Tensor t, Tensor s) -> Tensor");
  // Both gradients of l1_discrepancy in one pass: (sign(t - s) * grad / numel, its negation), each in
  // its input's dtype and memory format. grad is the 0-dim float32 gradient of the loss. A gradient
  // whose need_* flag is false is not computed and comes back as an empty (0-element) tensor.
  m.def(
      "l1_discrepancy_backward(Tensor grad, Tensor t, Tensor s, bool need_t=True, bool need_s=True)"
      " -> (Tensor, Tensor)");
}
