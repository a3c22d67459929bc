"""Every error distillpipe raises on purpose.

    DistillpipeError                 one red line on the CLI, exit 1
    ├── ConfigError                  a bad config key or value (names key and file:line)
    ├── InputError                   a bad input record (names file:line)
    ├── MissingDependencyError       an optional extra is not installed (says what to pip install)
    ├── TeacherError                 a teacher call failed (names the request)
    │   ├── RetryableTeacherError    429, 408, 409, 5xx, timeouts, dropped connections
    │   └── FatalTeacherError        401, 403, 400, context length: stop the stage at once
    │       └── MissingApiKeyError   raised before any request is sent
    ├── BudgetExceededError          --max-cost reached; the run is resumable
    ├── ServerError                  a managed local server did not start or died (log tail)
    ├── CacheError                   the response cache could not be written (disk full, locked)
    └── SandboxError                 the requested code sandbox cannot run on this machine

Backend exceptions are mapped to these at the boundary (``raise ... from exc``).
"""

from __future__ import annotations


class DistillpipeError(Exception):
    """Base of every error the CLI reports as one line."""


class ConfigError(DistillpipeError):
    pass


class InputError(DistillpipeError):
    pass


class MissingDependencyError(DistillpipeError):
    def __init__(self, what: str, extra: str) -> None:
        super().__init__(f"{what} needs an optional dependency: pip install 'distillpipe[{extra}]'")
        self.extra = extra


class TeacherError(DistillpipeError):
    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        if request_id:
            message = f"request {request_id}: {message}"
        super().__init__(message)
        self.request_id = request_id


class RetryableTeacherError(TeacherError):
    def __init__(
        self, message: str, *, request_id: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.retry_after = retry_after


class FatalTeacherError(TeacherError):
    pass


class MissingApiKeyError(FatalTeacherError):
    pass


class BudgetExceededError(DistillpipeError):
    pass


class ServerError(DistillpipeError):
    """A managed local server did not start, or died during the run."""


class CacheError(DistillpipeError):
    """The response cache could not be written; what was committed before stays."""


class SandboxError(DistillpipeError):
    pass
