"""The errors every layer may raise: UserError, the base of every error a user can fix (its message is shown as
it is, without a traceback), and RunStopped."""


class UserError(Exception):
    pass


class DataError(UserError, ValueError):
    """A task's data cannot be used; the message names the task, the file or column, and the fix."""


class RunStopped(Exception):
    """The user stopped a run before training began (while loading or downloading); not an error."""
