"""The base of every error a user can fix: its message is shown as it is, without a traceback."""


class UserError(Exception):
    pass
