"""Errors that mean "the user asked for something we cannot do", said in one sentence.

The CLI turns a UserError into one line on stderr and exit status 2, never a traceback.
"""


class UserError(Exception):
    """A mistake in the user's input or arguments (missing path, unwritable output, bad file)."""


class CheckpointError(UserError):
    """A directory that is not a loadable checkpoint, or a tokenizer that does not fit it."""
