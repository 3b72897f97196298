"""Triton kernels of ``ddad::bn_stats_loss``, the BN-statistics term of one BatchNorm2d input x:

    loss = ||mean(x) - running_mean||_2 + ||var(x) - running_var||_2

with mean and biased var per channel over (N, H, W), M = N*H*W elements each.

x (N, C, H, W) is read through its strides as [O outer][C channels][L inner], element (o, c, l)
at ``(o // Ho) * stride_n + (o % Ho) * stride_h + c * stride_c + l * stride_l``: H and W fold
into L when their strides allow (NCHW and channels_last, Ho = 1), otherwise L = W and O = N*H.
No layout is ever copied. Tiles are [BLOCK_L, BLOCK_C], laid out along whichever of L and C is
contiguous.

forward = two launches. Stage 1 (grid: channel blocks x SPLIT_O x SPLIT_L, so that a big N*H*W
with few channels still fills the GPU) adds up, per program and channel, sum(x - k_c) and
sum((x - k_c)^2) in fp32 (k_c = x[0, c, 0, 0], a shift that keeps E[x^2] - E[x]^2 from
cancelling when |mean| >> std) into its own partial slot. Stage 2 (one program) adds the partials
in a fixed order and writes mean, var, dist = (||mean - rm||, ||var - rv||) and loss.
backward = one launch: dx = a_c + b_c (x - mean_c), a_c = g (mean_c - rm_c) / (dist_0 M),
b_c = 2 g (var_c - rv_c) / (dist_1 M) (0 where a distance is 0), in x's dtype and strides.

Importing this module needs triton but no GPU; with ``TRITON_INTERPRET=1`` set before triton is
imported the kernels also run on CPU tensors (slowly).
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import wrap_triton

TILE = 4096  # elements per [BLOCK_L, BLOCK_C] tile
PROGRAMS_PER_SM = 4  # forward stage 1 aims at this many programs per SM
MIN_TILES_PER_SLICE = 8  # forward: each stage-1 program reads at least this many tiles, which
MAX_PARTIALS = 1024  # ... and this cap keep the partials stage 2 adds in one program few
FINALIZE_BLOCK_C = 64  # stage 2's [BLOCK_P, BLOCK_C] tiles: at 256 channels ptxas spills (sm_90)
TILES_PER_PROGRAM = 4  # backward: tiles each program writes
PARTIAL_WARPS = 8  # stage 1 holds two fp32 tiles: with 4 warps ptxas spills at 256 x 16 (sm_90)


@triton.jit
def _bn_stats_partial_kernel(
    x_ptr,  # x (N, C, H, W), any strides: element (o, c, l) as in the module docstring
    part_ptr,  # (2, P, C) fp32 out: shifted sums, then shifted sums of squares, P = SPLIT_O*SPLIT_L
    n_outer,  # O = N * Ho
    Ho,
    C,
    L,
    stride_n,
    stride_h,
    stride_c,
    stride_l,
    o_per,  # outer positions per program (axis 1)
    l_per,  # inner positions per program (axis 2), a multiple of BLOCK_L
    BLOCK_C: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """part[0, p, c] = sum (x - k_c), part[1, p, c] = sum (x - k_c)^2 over program p's slice."""
    pid_c = tl.program_id(0)
    pid_o = tl.program_id(1)
    pid_l = tl.program_id(2)
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    c_off = c.to(tl.int64) * stride_c
    shift = tl.load(x_ptr + c_off, mask=c_mask, other=0.0).to(tl.float32)
    acc = tl.zeros([BLOCK_L, BLOCK_C], dtype=tl.float32)
    acc_sq = tl.zeros([BLOCK_L, BLOCK_C], dtype=tl.float32)
    o_begin = pid_o * o_per
    o_end = tl.minimum(o_begin + o_per, n_outer)
    l_begin = pid_l * l_per
    l_end = tl.minimum(l_begin + l_per, L)
    for o in range(o_begin, o_end):
        o64 = tl.cast(o, tl.int64)
        base = x_ptr + (o64 // Ho) * stride_n + (o64 % Ho) * stride_h
        for l_start in range(l_begin, l_end, BLOCK_L):
            pos = l_start + tl.arange(0, BLOCK_L)
            mask = (pos < l_end)[:, None] & c_mask[None, :]
            ptrs = base + pos.to(tl.int64)[:, None] * stride_l + c_off[None, :]
            v = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
            d = tl.where(mask, v - shift[None, :], 0.0)
            acc += d
            acc_sq += d * d
    p = pid_o * tl.num_programs(2) + pid_l
    P = tl.num_programs(1) * tl.num_programs(2)
    tl.store(part_ptr + p * C + c, tl.sum(acc, axis=0), mask=c_mask)
    tl.store(part_ptr + (P + p) * C + c, tl.sum(acc_sq, axis=0), mask=c_mask)


@triton.jit
def _bn_stats_finalize_kernel(
    part_ptr,  # (2, P, C) fp32: the partials of _bn_stats_partial_kernel
    x_ptr,  # x, only for the shifts k_c = x[0, c, 0, 0] at c * stride_c
    rm_ptr,  # (C,) running_mean, any float dtype
    rv_ptr,  # (C,) running_var, any float dtype
    mean_ptr,  # (C,) fp32 out
    var_ptr,  # (C,) fp32 out
    dist_ptr,  # (2,) fp32 out: ||mean - rm||, ||var - rv||
    loss_ptr,  # () fp32 out: dist[0] + dist[1]
    C,
    P,
    M,  # N*H*W
    stride_c,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    """One program: mean = k + S/M, var = max(Q/M - (S/M)^2, 0), the distances and the loss."""
    inv_m = 1.0 / M
    dm2 = tl.zeros([BLOCK_C], dtype=tl.float32)
    dv2 = tl.zeros([BLOCK_C], dtype=tl.float32)
    for c_start in range(0, C, BLOCK_C):
        c = c_start + tl.arange(0, BLOCK_C)
        c_mask = c < C
        s = tl.zeros([BLOCK_C], dtype=tl.float32)
        q = tl.zeros([BLOCK_C], dtype=tl.float32)
        for p_start in range(0, P, BLOCK_P):
            p = p_start + tl.arange(0, BLOCK_P)
            mask = (p < P)[:, None] & c_mask[None, :]
            offs = p[:, None] * C + c[None, :]
            s += tl.sum(tl.load(part_ptr + offs, mask=mask, other=0.0), axis=0)
            q += tl.sum(tl.load(part_ptr + P * C + offs, mask=mask, other=0.0), axis=0)
        shift = tl.load(x_ptr + c.to(tl.int64) * stride_c, mask=c_mask, other=0.0).to(tl.float32)
        d = s * inv_m
        mean = shift + d
        var = tl.maximum(q * inv_m - d * d, 0.0)
        tl.store(mean_ptr + c, mean, mask=c_mask)
        tl.store(var_ptr + c, var, mask=c_mask)
        rm = tl.load(rm_ptr + c, mask=c_mask, other=0.0).to(tl.float32)
        rv = tl.load(rv_ptr + c, mask=c_mask, other=0.0).to(tl.float32)
        dm = tl.where(c_mask, mean - rm, 0.0)
        dv = tl.where(c_mask, var - rv, 0.0)
        dm2 += dm * dm
        dv2 += dv * dv
    dist_m = tl.sqrt(tl.sum(dm2, axis=0))
    dist_v = tl.sqrt(tl.sum(dv2, axis=0))
    tl.store(dist_ptr, dist_m)
    tl.store(dist_ptr + 1, dist_v)
    tl.store(loss_ptr, dist_m + dist_v)


@triton.jit
def _bn_stats_backward_kernel(
    x_ptr,  # x (N, C, H, W), element (o, c, l) as in the module docstring
    dx_ptr,  # (N, C, H, W) out, x's dtype, its own strides (dx_stride_*)
    grad_ptr,  # () dL for the loss
    mean_ptr,  # (C,) fp32, from the forward
    var_ptr,  # (C,) fp32, from the forward
    dist_ptr,  # (2,) fp32, from the forward
    rm_ptr,  # (C,) running_mean
    rv_ptr,  # (C,) running_var
    n_outer,  # O = N * Ho
    Ho,
    C,
    L,
    M,
    stride_n,
    stride_h,
    stride_c,
    stride_l,
    dx_stride_n,
    dx_stride_h,
    dx_stride_c,
    dx_stride_l,
    o_per,
    l_per,
    BLOCK_C: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """dx = g/M * (dL/dmean_c + 2 dL/dvar_c (x - mean_c)) over this program's slice."""
    pid_c = tl.program_id(0)
    pid_o = tl.program_id(1)
    pid_l = tl.program_id(2)
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    g = tl.load(grad_ptr).to(tl.float32)
    g_m = g * (1.0 / M)
    dist_m = tl.load(dist_ptr)
    dist_v = tl.load(dist_ptr + 1)
    gm = tl.where(dist_m > 0.0, g_m / tl.maximum(dist_m, 1e-30), 0.0)
    gv = tl.where(dist_v > 0.0, 2.0 * g_m / tl.maximum(dist_v, 1e-30), 0.0)
    mean = tl.load(mean_ptr + c, mask=c_mask, other=0.0)
    rm = tl.load(rm_ptr + c, mask=c_mask, other=0.0).to(tl.float32)
    rv = tl.load(rv_ptr + c, mask=c_mask, other=0.0).to(tl.float32)
    a = gm * (mean - rm)
    b = gv * (tl.load(var_ptr + c, mask=c_mask, other=0.0) - rv)
    c_off = c.to(tl.int64) * stride_c
    dc_off = c.to(tl.int64) * dx_stride_c
    o_begin = pid_o * o_per
    o_end = tl.minimum(o_begin + o_per, n_outer)
    l_begin = pid_l * l_per
    l_end = tl.minimum(l_begin + l_per, L)
    for o in range(o_begin, o_end):
        o64 = tl.cast(o, tl.int64)
        base = x_ptr + (o64 // Ho) * stride_n + (o64 % Ho) * stride_h
        dx_base = dx_ptr + (o64 // Ho) * dx_stride_n + (o64 % Ho) * dx_stride_h
        for l_start in range(l_begin, l_end, BLOCK_L):
            pos = (l_start + tl.arange(0, BLOCK_L)).to(tl.int64)
            mask = (pos < l_end)[:, None] & c_mask[None, :]
            v = tl.load(base + pos[:, None] * stride_l + c_off[None, :], mask=mask, other=0.0)
            dx = a[None, :] + b[None, :] * (v.to(tl.float32) - mean[None, :])
            dx_ptrs = dx_base + pos[:, None] * dx_stride_l + dc_off[None, :]
            tl.store(dx_ptrs, dx.to(dx_ptr.dtype.element_ty), mask=mask)


# ---- launchers ----------------------------------------------------------------------------------


def _view3(t: Tensor) -> tuple[int, int, int, int, int, int, int, int]:
    """t (N, C, H, W) as [O][C][L]: (O, Ho, C, L, stride_n, stride_h, stride_c, stride_l)."""
    n, c, h, w = t.shape
    sn, sc, sh, sw = t.stride()
    if h == 1 or w == 1 or sh == w * sw:  # H and W fold into L
        return n, 1, c, h * w, sn, 0, sc, (sh if w == 1 else sw)
    return n * h, h, c, w, sn, sh, sc, sw


def _blocks(c: int, l_len: int, stride_c: int, stride_l: int) -> tuple[int, int]:
    """(BLOCK_C, BLOCK_L): a TILE-element tile, long along the contiguous dimension."""
    if stride_c == 1 and not (stride_l == 1 and l_len > 1):  # channels_last: C is contiguous
        block_c = min(triton.next_power_of_2(c), 128)
        return block_c, max(TILE // block_c, 1)
    block_l = min(triton.next_power_of_2(l_len), 1024)
    return min(max(TILE // block_l, 1), triton.next_power_of_2(c)), block_l


@functools.cache
def _num_sms(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _programs_wanted(device: torch.device) -> int:
    """Programs that fill the device: a few per SM on CUDA; a handful elsewhere (interpreter)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return PROGRAMS_PER_SM * _num_sms(index)
    return 8


def _split(o: int, l_len: int, block_l: int, splits: int) -> tuple[int, int, int, int]:
    """(SPLIT_O, SPLIT_L, o_per, l_per): about ``splits`` slices of the [O, L] plane."""
    l_blocks = triton.cdiv(l_len, block_l)
    splits = max(1, min(splits, o * l_blocks))
    split_o = min(o, splits)
    o_per = triton.cdiv(o, split_o)
    split_o = triton.cdiv(o, o_per)
    split_l = max(1, min(l_blocks, splits // split_o))
    l_per = triton.cdiv(l_blocks, split_l) * block_l
    split_l = triton.cdiv(l_len, l_per)
    return split_o, split_l, o_per, l_per


def bn_stats_forward(
    x: Tensor, running_mean: Tensor, running_var: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(loss (), mean (C,), var (C,), dist (2,)), all fp32, of x (N, C, H, W) in two launches."""
    running_mean, running_var = running_mean.contiguous(), running_var.contiguous()  # read at c
    o, ho, c, l_len, sn, sh, sc, sl = _view3(x)
    m = x.shape[0] * x.shape[2] * x.shape[3]
    block_c, block_l = _blocks(c, l_len, sc, sl)
    c_blocks = triton.cdiv(c, block_c)
    tiles = o * triton.cdiv(l_len, block_l)  # per channel block
    splits = min(_programs_wanted(x.device) // c_blocks, tiles // MIN_TILES_PER_SLICE)
    splits = max(1, min(MAX_PARTIALS, splits))
    split_o, split_l, o_per, l_per = _split(o, l_len, block_l, splits)
    num_partials = split_o * split_l
    partials = torch.empty((2, num_partials, c), device=x.device, dtype=torch.float32)
    wrap_triton(_bn_stats_partial_kernel)[(c_blocks, split_o, split_l)](
        x,
        partials,
        o,
        ho,
        c,
        l_len,
        sn,
        sh,
        sc,
        sl,
        o_per,
        l_per,
        BLOCK_C=block_c,
        BLOCK_L=block_l,
        num_warps=PARTIAL_WARPS,
    )
    mean = torch.empty((c,), device=x.device, dtype=torch.float32)
    var = torch.empty_like(mean)
    dist = torch.empty((2,), device=x.device, dtype=torch.float32)
    loss = torch.empty((), device=x.device, dtype=torch.float32)
    wrap_triton(_bn_stats_finalize_kernel)[(1,)](
        partials,
        x,
        running_mean,
        running_var,
        mean,
        var,
        dist,
        loss,
        c,
        num_partials,
        m,
        sc,
        BLOCK_C=min(triton.next_power_of_2(c), FINALIZE_BLOCK_C),
        BLOCK_P=min(triton.next_power_of_2(num_partials), 32),
    )
    return loss, mean, var, dist


def bn_stats_backward(
    grad: Tensor,
    x: Tensor,
    mean: Tensor,
    var: Tensor,
    dist: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
) -> Tensor:
    """dx (x's shape, dtype and strides where x is dense) of the loss, in one launch."""
    running_mean, running_var = running_mean.contiguous(), running_var.contiguous()  # read at c
    dx = torch.empty_like(x)
    o, ho, c, l_len, sn, sh, sc, sl = _view3(x)
    d_o, d_ho, _, d_l, dsn, dsh, dsc, dsl = _view3(dx)
    if (d_o, d_ho, d_l) != (o, ho, l_len):  # dx folds differently from x: walk both unfolded
        n, _, h, w = x.shape
        o, ho, l_len, sh, sl = n * h, h, w, x.stride(2), x.stride(3)
        dsh, dsl = dx.stride(2), dx.stride(3)
    m = x.shape[0] * x.shape[2] * x.shape[3]
    block_c, block_l = _blocks(c, l_len, sc, sl)
    c_blocks = triton.cdiv(c, block_c)
    tiles = o * triton.cdiv(l_len, block_l)
    split_o, split_l, o_per, l_per = _split(
        o, l_len, block_l, max(1, min(65535, triton.cdiv(tiles, TILES_PER_PROGRAM)))
    )
    wrap_triton(_bn_stats_backward_kernel)[(c_blocks, split_o, split_l)](
        x,
        dx,
        grad,
        mean,
        var,
        dist,
        running_mean,
        running_var,
        o,
        ho,
        c,
        l_len,
        m,
        sn,
        sh,
        sc,
        sl,
        dsn,
        dsh,
        dsc,
        dsl,
        o_per,
        l_per,
        BLOCK_C=block_c,
        BLOCK_L=block_l,
    )
    return dx
