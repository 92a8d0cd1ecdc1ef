"""Exceptions raised for bad input. The CLI prints their message on one line and exits 2."""


class KerasTextgenError(ValueError):
    """Base class: a problem with what the user asked for, not a bug."""


class DataError(KerasTextgenError):
    """The corpus cannot be used (missing, empty, not UTF-8, too small...)."""


class ConfigError(KerasTextgenError):
    """An option or argument is out of range."""


class ArtifactError(KerasTextgenError):
    """A saved model, vocabulary or export is missing, corrupt or mismatched."""


class BusyError(KerasTextgenError):
    """Another process is writing the same model directory or export (see keras_textgen.lock)."""
