"""The errors ddad_fast raises for bad input: each message names the problem and the fix."""


class DDADError(ValueError):
    """Base class of every user-facing error; the CLI prints its message without a traceback."""


class ConfigError(DDADError):
    """An impossible setting or combination: mismatched class counts, a teacher without BN, ..."""


class CheckpointError(DDADError):
    """A checkpoint that is missing, truncated, unsafe to unpickle or from another architecture."""
