// Torch binding of the ddad::l1_discrepancy CUDA kernels (l1_discrepancy_kernel.cu): checks,
// memory layout (as on CPU, see ../l1_discrepancy.h), allocation through the caching allocator and
// launches on the current stream, with no host synchronisation, so CUDA graphs can capture the op.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>

#include "../l1_discrepancy.h"
#include "l1_discrepancy_kernel.h"

namespace {

using ddad::cuda::L1DType;

L1DType kernel_dtype(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat:
      return L1DType::kFloat32;
    case at::kBFloat16:
      return L1DType::kBFloat16;
    case at::kHalf:
      return L1DType::kFloat16;
    default:
      TORCH_CHECK(false, "unreachable: dtype checked before");
  }
}

void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

void* ptr_or_null(const at::Tensor& x) { return x.defined() ? x.data_ptr() : nullptr; }

at::Tensor l1_discrepancy_cuda(const at::Tensor& t, const at::Tensor& s) {
  ddad::l1::check_inputs(t, s, "ddad::l1_discrepancy");
  const c10::cuda::CUDAGuard guard(t.device());
  at::Tensor out = at::empty({}, t.options().dtype(at::kFloat));
  const int64_t n = t.numel();
  if (n == 0) {
    return out.fill_(std::nanf(""));  // the mean of nothing, as torch's mean
  }
  const auto [tw, sw] = ddad::l1::in_common_layout(t, s);
  at::Tensor workspace =
      at::empty({ddad::cuda::l1_forward_workspace(n)}, t.options().dtype(at::kFloat));
  check_launch(ddad::cuda::l1_forward(kernel_dtype(tw.scalar_type()), tw.data_ptr(),
                                      sw.data_ptr(), n, workspace.data_ptr<float>(),
                                      out.data_ptr<float>(), c10::cuda::getCurrentCUDAStream()),
               "ddad::l1_discrepancy");
  return out;
}

std::tuple<at::Tensor, at::Tensor> l1_discrepancy_backward_cuda(const at::Tensor& grad,
                                                                const at::Tensor& t,
                                                                const at::Tensor& s, bool need_t,
                                                                bool need_s) {
  ddad::l1::check_inputs(t, s, "ddad::l1_discrepancy_backward");
  const c10::cuda::CUDAGuard guard(t.device());
  const at::Tensor g = ddad::l1::checked_grad(grad, t);
  at::Tensor out_t = need_t ? at::empty_like(t) : at::empty({0}, t.options());
  at::Tensor out_s = need_s ? at::empty_like(s) : at::empty({0}, s.options());
  const int64_t n = t.numel();
  if (n == 0 || (!need_t && !need_s)) {
    return {out_t, out_s};
  }
  const auto [tw, sw] = ddad::l1::in_common_layout(t, s);
  const at::Tensor gt = need_t ? ddad::l1::kernel_target(out_t, tw) : at::Tensor();
  const at::Tensor gs = need_s ? ddad::l1::kernel_target(out_s, tw) : at::Tensor();
  check_launch(ddad::cuda::l1_backward(kernel_dtype(tw.scalar_type()), g.data_ptr<float>(),
                                       tw.data_ptr(), sw.data_ptr(), ptr_or_null(gt),
                                       ptr_or_null(gs), n, c10::cuda::getCurrentCUDAStream()),
               "ddad::l1_discrepancy_backward");
  ddad::l1::copy_from_target(out_t, gt);
  ddad::l1::copy_from_target(out_s, gs);
  return {out_t, out_s};
}

}  // namespace

TORCH_LIBRARY_IMPL(ddad, CUDA, m) {
  m.impl("l1_discrepancy", &l1_discrepancy_cuda);
  m.impl("l1_discrepancy_backward", &l1_discrepancy_backward_cuda);
}
