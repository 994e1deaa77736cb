"""Exceptions raised by the library; the CLI turns each into `Error: …` and an exit code."""

from __future__ import annotations


class MnistInferError(Exception):
    """Base class of every expected failure; `exit_code` is what the CLI exits with."""

    exit_code = 1


class UsageError(MnistInferError):
    """An option or argument value the library cannot work with."""

    exit_code = 2


class NoSuchUnitError(UsageError):
    """A layer or unit number the network does not have."""


class NetworkError(MnistInferError):
    """A download failed on every mirror (connection, timeout, HTTP error)."""

    exit_code = 3


class IntegrityError(MnistInferError):
    """Downloaded or cached data does not match its pinned SHA-256 or size."""

    exit_code = 4


class InputFileError(MnistInferError):
    """A file given to the tool is missing, unreadable or malformed."""

    exit_code = 5


class IdxFormatError(InputFileError):
    """An IDX file has a wrong magic number, header or payload length."""


class WeightsError(InputFileError):
    """A weights file is unreadable or its arrays are not a valid network."""


class UnsafePickleError(WeightsError):
    """A pickle asked for a global outside the allow-list; nothing from it was run."""


class ImageError(InputFileError):
    """An image file cannot be decoded or holds no digit."""


class OutputExistsError(MnistInferError):
    """An output file exists and `--force` was not given."""

    exit_code = 1


class TrainingDiverged(MnistInferError):
    """Training produced a non-finite loss or weights."""

    exit_code = 1


class Interrupted(MnistInferError):
    """Long work stopped by Ctrl-C after saving what it had."""

    exit_code = 130
