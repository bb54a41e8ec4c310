"""The exception tree shared by every part of Corral.

    CorralError
    ├── NotFoundError(LookupError)            404: unknown sandbox, template, key, process, file
    ├── AuthError(PermissionError)            401: missing or wrong API key / access token
    ├── ForbiddenError(PermissionError)       403: a valid key that may not do this
    ├── InvalidRequestError(ValueError)       400: a malformed body or parameter (names the field)
    ├── ConflictError                         409: the object is in a state that forbids this
    ├── LimitExceededError                    429: a quota or limit was hit (carries retry_after)
    ├── StorageFullError(OSError)             507: no disk left (a volume, or a checkpoint image: nothing changed)
    ├── SandboxTimeoutError(TimeoutError)     a sandbox or command ran past its deadline
    └── RuntimeFailure(RuntimeError)          the isolation backend failed (runsc/runc/mount/cgroup)

The HTTP layer maps each class to its status; nothing else turns into a 500.
"""

from __future__ import annotations


class CorralError(Exception):
    """Base of every error Corral raises on purpose."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(CorralError, LookupError):
    status_code = 404


class AuthError(CorralError, PermissionError):
    status_code = 401


class ForbiddenError(CorralError, PermissionError):
    status_code = 403


class InvalidRequestError(CorralError, ValueError):
    status_code = 400


class ConflictError(CorralError):
    status_code = 409


class LimitExceededError(CorralError):
    status_code = 429

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageFullError(CorralError, OSError):
    status_code = 507


class SandboxTimeoutError(CorralError, TimeoutError):
    status_code = 504


class RuntimeFailure(CorralError, RuntimeError):
    status_code = 503


class ImageNotFoundError(NotFoundError):
    """404: an image reference Corral cannot resolve; the message says how to import, tag or pull it."""


class ImageArchiveError(InvalidRequestError):
    """400: an image archive that is malformed or hostile (path traversal, escaping links, bad digests)."""
