"""The one exception type the command-line scripts turn into a one-line message.

Anything a user can fix (a missing file, a bad option, a port in use, a failed
transform) is raised as a ``UserError`` whose text is the whole message; the
scripts print it and exit non-zero instead of showing a traceback.
"""


class UserError(Exception):
    """A problem the user can fix; ``str(error)`` says what was wrong and what to do."""
