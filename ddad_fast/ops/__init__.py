"""Fused ops (``torch.ops.ddad.*``) with the same inputs and outputs as their eager references in
``ddad_fast.losses``; each module registers one op's fake implementation and autograd."""
