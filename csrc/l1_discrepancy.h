// Device-independent parts of ddad::l1_discrepancy shared by the CPU and CUDA bindings: the input
// checks and the memory-layout rule. Both device kernels see t and s as flat arrays in memory order,
// which is valid when both are dense in the same layout (contiguous, channels_last or any other
// permutation); these helpers make that so with as few copies as possible.
#pragma once

#include <ATen/core/Tensor.h>

namespace ddad::l1 {

// Checks that t and s have the same shape, dtype (float32, bfloat16 or float16) and device.
// op names the op in the error messages.
void check_inputs(const at::Tensor& t, const at::Tensor& s, const char* op);

// Checks the incoming gradient (one element, on t's device) and returns it as float32.
at::Tensor checked_grad(const at::Tensor& grad, const at::Tensor& t);

// True when a and b (same shape) are both non-overlapping and dense with equal strides on every
// dimension of size > 1, i.e. element k of one's memory is element k of the other's.
bool same_dense_layout(const at::Tensor& a, const at::Tensor& b);

// (t, s) in one dense layout, the kernels' input. When both already share one (channels_last maps
// included) they are returned as they are. Otherwise the layout is t's own (or, if t is not dense,
// that of at::empty_like(t)), and whichever input does not have it is copied into it: one copy when
// the two layouts differ, two when neither input is dense.
struct FlatPair {
  at::Tensor t, s;
};
FlatPair in_common_layout(const at::Tensor& t, const at::Tensor& s);

// Where the kernel writes the gradient that ends up in out (allocated with at::empty_like(input)):
// out itself when it has the kernel's layout (that of like), otherwise a buffer in that layout that
// the caller copies into out afterwards.
at::Tensor kernel_target(const at::Tensor& out, const at::Tensor& like);

// Copies the kernel's gradient target into out when kernel_target gave a separate buffer; does
// nothing when target is out itself or undefined (that gradient was not needed).
void copy_from_target(at::Tensor& out, const at::Tensor& target);

}  // namespace ddad::l1
