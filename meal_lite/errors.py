"""Exceptions raised by meal-lite.

Every error a user can meet is one of these, with a message of one sentence that names what is wrong
and how to fix it. They share a base class so a command line can print the sentence instead of a
traceback.
"""


class MealLiteError(Exception):
    """Base class of every meal-lite error a user is expected to read."""


class ConfigError(MealLiteError, ValueError):
    """A configuration file, key, value or profile is wrong."""


class DataError(MealLiteError):
    """A dataset is missing, unreadable or has the wrong classes."""


class ModelError(MealLiteError):
    """A model name, its weights or its class count is wrong."""


class NonFiniteLossError(MealLiteError):
    """Training produced a NaN or infinite loss and was stopped."""


class CheckpointError(MealLiteError):
    """A checkpoint is missing, unreadable or does not fit the run."""


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (or its class name when it has none), at most ``limit`` chars.

    Library errors (torch, PIL, torchvision) often span many lines; meal-lite quotes only this line
    inside its own one-sentence messages.
    """
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]
