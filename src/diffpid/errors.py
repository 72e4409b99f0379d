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
