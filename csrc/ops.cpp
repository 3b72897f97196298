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

  // The CPU kernels behind ddad::bn_stats_loss (the op itself is a triton_op defined in
  // ddad_fast/ops/bn_stats.py, whose CPU path calls these). For x (N, C, H, W) in any memory format
  // and running statistics (C,): the loss ||mean - running_mean||_2 + ||var - running_var||_2 with
  // the per-channel fp32 mean and biased var it used, and dist = the two norms (2,) in fp32.
  m.def(
      "bn_stats_forward_cpu(Tensor x, Tensor running_mean, Tensor running_var)"
      " -> (Tensor loss, Tensor mean, Tensor var, Tensor dist)");
  // dx = dL/dmean / M + dL/dvar * 2 (x - mean) / M (M = N*H*W) in x's dtype and memory format.
  m.def(
      "bn_stats_backward_cpu(Tensor grad, Tensor x, Tensor mean, Tensor var, Tensor dist,"
      " Tensor running_mean, Tensor running_var) -> Tensor");
}
