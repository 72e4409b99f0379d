"""Errors a user can cause, one type per kind; the CLI prints them in one line.

Every message says what went wrong and what to do about it.
"""


class DiffpidError(Exception):
    """Base of every error diffpid raises for bad input."""


class ParameterError(DiffpidError, ValueError):
    """A parameter is out of range or of the wrong kind."""


class ShapeError(DiffpidError, ValueError):
    """Tensors do not have the shapes the model or estimator expects."""


class ConditionError(DiffpidError, ValueError):
    """A condition cannot be built: a word not in the prompt, an unknown label, a prompt too long."""


class ModelOutputError(DiffpidError, RuntimeError):
    """The model returned NaN or Inf, or an output of the wrong shape."""


class ModelLoadError(DiffpidError, OSError):
    """A model folder or hub id cannot be loaded, or its pipeline class is unsupported."""


class ImageError(DiffpidError, ValueError):
    """An image cannot be read or converted."""


class OutputExistsError(DiffpidError, FileExistsError):
    """An output folder exists already (pass overwrite to replace it)."""


class DatasetError(DiffpidError, ValueError):
    """A dataset folder or file is missing, malformed, or needs an optional package that is not installed."""


class OutputPathError(DiffpidError, OSError):
    """An output path cannot be written (a virtual file system, under a file, not writable) or must not be replaced."""


class ImageWarning(UserWarning):
    """An image was converted in a way the user should know of (alpha blended onto white, strong upscaling)."""


#: exit status of a command whose arguments were wrong (argparse's and every DiffpidError's)
EXIT_USAGE = 2
#: exit status of a dataset run (``diffpid run``, ``diffpid bench ...``) in which some items failed
EXIT_FAILED_ITEMS = 3


class ItemsFailedError(DiffpidError, RuntimeError):
    """Every item of a dataset run failed (each item's reason is in the run folder); exits with EXIT_FAILED_ITEMS."""
