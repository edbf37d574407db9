"""``serve``'s janitor: removes what nothing else will, stale uploads, the work directories of
long-FAILED videos and leftover staging directories.

- :mod:`origin.janitor.policy`: what is due for removal (pure decisions, no I/O).
- :mod:`origin.janitor.run`: :class:`~origin.janitor.run.Janitor`, the driver ``serve`` runs in
  its background TaskSet every ``api.janitor_interval_s``.
"""

from origin.janitor.run import Janitor, JanitorSettings

__all__ = ["Janitor", "JanitorSettings"]
