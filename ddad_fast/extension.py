"""Loads the compiled extension ``ddad_fast._C`` (which registers ``torch.ops.ddad.*``) once.

A missing extension is said once, loudly, and the callers fall back to the eager reference.
"""

from __future__ import annotations

import functools
import warnings


@functools.cache
def extension_available() -> bool:
    """True when ``ddad_fast._C`` imported; otherwise warns once and returns False."""
    try:
        from . import _C  # noqa: F401  (importing registers the ops)
    except ImportError as e:
        warnings.warn(
            f"ddad_fast._C is not built ({e}); fused ops fall back to the eager reference. "
            "Build it with `pip install --no-build-isolation -e .` (or `make setup`).",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    return True
