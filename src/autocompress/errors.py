"""Exceptions raised by autocompress.

Every error a user can cause derives from AutoCompressError so that the CLI can turn it into a
clear message and exit code 2, and API users can catch one type.
"""


class AutoCompressError(Exception):
    """Base class of every documented autocompress error."""


class ConfigError(AutoCompressError, ValueError):
    """A config key, value or combination is invalid; the message names the key and what is allowed."""


class ModelLoadError(AutoCompressError):
    """The model file is missing, corrupt, unsafe or in a format that needs an extra."""


class DataError(AutoCompressError, ValueError):
    """A batch from a dataloader does not fit the model (names, dtype, rank, shape, NaN) or is empty."""


class UnsupportedOpError(AutoCompressError):
    """An ONNX op that a pass or the torch executor does not implement."""


class StrategyNotImplementedError(AutoCompressError, NotImplementedError):
    """A configured strategy that this version does not implement yet."""


class UsageError(AutoCompressError, ValueError):
    """A command-line argument, or a file it names (report.json), that does not fit the command; the message names
    the argument or file and what is allowed."""


class SaveDirError(AutoCompressError):
    """save_dir, its work folder or a checkpoint cannot be written (disk full, no permission); the message names
    the path, and the previous result and checkpoint are kept."""
