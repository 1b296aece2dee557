"""dpdl: the helper package of the course *Differentiable Programming and Deep Learning*.

Notebooks import boilerplate from here (data, devices, seeds, plotting, progress) so that the lab
itself can show the concept's code. ``import dpdl; device = dpdl.device()``.
"""

from dpdl.device import device, device_reason
from dpdl.repro import seed_everything

__version__ = "0.1.0"

__all__ = ["device", "device_reason", "seed_everything", "__version__"]
