"""What a stage's failure means for its job: another attempt, or the title's end.

```
Exception raised by a stage          -> recorded with Catalog.fail(..., permanent=?)
 ├── Rejected                        permanent: retrying cannot help. The upload is not a usable
 │                                   video (ProbeRejected's reason), its source is missing, a
 │                                   payload this version cannot read, the video is FAILED or
 │                                   gone. The video is FAILED with the message.
 ├── origin.media.ProbeRejected      permanent (its reason, as Rejected)
 ├── origin.catalog.NotFound         permanent: the video was deleted under the job
 ├── origin.media.MediaError         retried: a tool failed or timed out (ToolTimeout, also
 │                                   counted); the message names the step and ends with the
 │                                   tool's stderr tail
 └── anything else                   retried: I/O, a busy database, a bug (logged with its trace)
asyncio.CancelledError               never recorded: the lease was lost (another worker redoes
                                     the job) or the worker is shutting down (the lease expires)
```

:func:`classify` is the one place that decides; the worker applies it.
"""

from __future__ import annotations

from dataclasses import dataclass

from origin.catalog import NotFound
from origin.media.probe import ProbeRejected
from origin.media.tools import MediaError, ToolTimeout


class Rejected(Exception):
    """Retrying cannot help; the message is the reason the video is FAILED with."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """How to record a failed attempt."""

    error: str
    """The job's ``last_error`` (and the video's failure reason if it is the last)."""
    permanent: bool
    expected: bool
    """False for errors that look like bugs: logged with their traceback."""
    tool_timeout: bool = False
    """A tool was killed at its timeout (the worker counts these by job kind)."""


def classify(exc: Exception) -> Verdict:
    """The record of a failed attempt, from what the stage raised."""
    if isinstance(exc, Rejected):
        return Verdict(str(exc), permanent=True, expected=True)
    if isinstance(exc, ProbeRejected):
        return Verdict(exc.reason, permanent=True, expected=True)
    if isinstance(exc, NotFound):
        return Verdict(f"gone: {exc}", permanent=True, expected=True)
    if isinstance(exc, MediaError):
        timed_out = isinstance(exc, ToolTimeout)
        return Verdict(str(exc), permanent=False, expected=True, tool_timeout=timed_out)
    if isinstance(exc, OSError):
        return Verdict(f"{type(exc).__name__}: {exc}", permanent=False, expected=True)
    return Verdict(f"{type(exc).__name__}: {exc}", permanent=False, expected=False)
