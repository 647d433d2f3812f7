"""The errors a user can cause, and nothing else.

A `UserError` is a mistake in what was asked (unknown policy, bad flag value, corrupt
checkpoint, unwritable folder…); its message says what to do instead. Every command turns
one into a single line on stderr and exit status 2 (`interp.cli.run`). Anything else that
escapes is a bug and keeps its traceback.

This module is the bottom layer: it imports nothing from `interp`.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the request; the message says what to do instead."""


class PolicyNotFound(UserError, LookupError):
    """No run (or no such step) answers to a policy name."""


class CheckpointError(UserError):
    """A checkpoint on disk is incomplete, corrupt or of another architecture."""


class UnknownGroup(UserError, KeyError):
    """A parameter-group name that the model's architecture does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ArchitectureMismatch(UserError):
    """Two policies that cannot exchange parameters or activations."""


class TrainingDiverged(UserError):
    """A non-finite loss; the checkpoints saved before it are kept."""


class DataError(UserError):
    """A preference data file that cannot be read as (prompt, chosen, rejected) rows."""


class UnsupportedModel(UserError):
    """A Hugging Face model folder of an architecture (or variant) the suite cannot load."""
