"""Code shared by the appliance, the origin and the control plane.

Everything here is pure (no I/O at import or call time) except :mod:`vodedge.logs`, which
configures logging handlers when asked.
"""

__version__ = "0.1.0"
