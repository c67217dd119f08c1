"""Errors a user can act on; the CLI prints them without a traceback."""


class Portable:
    """Mixed into an exception class so that it survives pickling whatever its ``__init__`` takes.

    Python pickles an exception as its class called again with ``args``, the arguments given to
    ``Exception.__init__``: a class whose own ``__init__`` takes others (``CorruptArchive(archive, reason)``
    passes one message up) cannot be rebuilt, and one sent back by a worker process killed the worker while
    the pool waited for it forever.  This rebuilds it as it was, without calling ``__init__`` again (an
    ``OSError``'s errno and strerror, which live outside ``__dict__``, from its ``args``).
    """

    def __reduce__(self):
        return _rebuilt, (type(self), self.args, self.__dict__)


def _rebuilt(kind, args, state):
    error = kind.__new__(kind, *args)
    if isinstance(error, OSError):
        OSError.__init__(error, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class DstrainError(Portable, Exception):
    """Something the user can fix; the message says what and where."""


class ConfigError(DstrainError):
    """Bad settings, refused before any work starts."""


class StageError(DstrainError):
    """A stage could not finish; what it finished before stays done."""
