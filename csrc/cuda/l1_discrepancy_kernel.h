// Launchers of the ddad::l1_discrepancy CUDA kernels (l1_discrepancy_kernel.cu). Plain C++ on raw
// pointers, so the kernels compile with nvcc and the CUDA headers alone; the torch binding
// (l1_discrepancy_cuda.cpp) checks and allocates the tensors and passes the current stream.
//
// All tensors are flat arrays of n elements in the same memory order (the binding makes sure).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace ddad::cuda {

enum class L1DType : int { kFloat32, kBFloat16, kFloat16 };

// Number of floats of workspace l1_forward needs for n elements (one partial sum per block).
int64_t l1_forward_workspace(int64_t n);

// *out = mean(|t - s|) over n > 0 elements, fp32. Two kernels on stream: per-block partial sums
// into workspace, then one block sums them in a fixed order. No atomics, no host sync.
cudaError_t l1_forward(L1DType dtype, const void* t, const void* s, int64_t n, float* workspace,
                       float* out, cudaStream_t stream);

// grad_t = sign(t - s) * (*grad) / n and grad_s = -grad_t, in t's dtype; grad is a device pointer
// to the fp32 gradient of the loss (read in the kernel, so no host sync). A null grad_t or grad_s is
// not written.
cudaError_t l1_backward(L1DType dtype, const float* grad, const void* t, const void* s,
                        void* grad_t, void* grad_s, int64_t n, cudaStream_t stream);

}  // namespace ddad::cuda
