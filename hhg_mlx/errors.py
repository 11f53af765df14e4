"""Errors with a one-line message meant for users. The CLI prints `hhg: <message>` and exits 2."""


class HhgError(Exception):
    """Base class: `str(err)` is a complete, one-line explanation (with the fix when there is one)."""


class IndexNotFound(HhgError):
    pass


class IndexCorrupt(HhgError):
    pass


class SchemaMismatch(HhgError):
    pass


class IndexLocked(HhgError):
    pass


class ModelUnavailable(HhgError):
    pass


class LicenseNotAccepted(HhgError):
    pass


class UnsupportedModel(HhgError):
    pass


class QueryTooLong(HhgError):
    pass


class ConfigUnreadable(HhgError):
    pass


def one_line(err: Exception) -> str:
    """The line a front end shows for `err`: an HhgError's own text, an OSError as `FILE: reason`, and
    anything else (a bug) as `internal error: Type: text`."""
    if isinstance(err, HhgError):
        return str(err)
    if isinstance(err, OSError):
        return f"{str(err.filename) + ': ' if err.filename else ''}{err.strerror or err}"
    return f"internal error: {type(err).__name__}: {err}"
