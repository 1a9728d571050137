"""The one exception type that means "the user gave us something wrong"."""


class UserError(Exception):
    """A problem with the user's input (model name, spec file, CLI flag, data).

    The CLI prints its message as one line and exits with status 2; the message must say what is
    wrong and what to do about it.
    """
