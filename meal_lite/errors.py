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
