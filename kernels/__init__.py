"""Triton kernels, one kernel family per file; installed as ``ddad_fast.kernels``.

Importing a kernel module needs triton; nothing here queries a GPU at import time.
"""
