"""Search spaces: importing this package implements the core's ``SPACES`` (scion.components)."""
from __future__ import annotations

from scion.components import SPACES
from scion.spec import make_space
from spaces.base import Arch, InvalidArchitecture, SearchSpace
from spaces.chain import ChainSpace
from spaces.conv1d import Conv1DSpace
from spaces.darts import DARTSSpace
from spaces.declared import DeclaredSpace
from spaces.nb201 import NB201Space

SPACES.implement("nb201", NB201Space)
SPACES.implement("darts", DARTSSpace)
SPACES.implement("chain", ChainSpace)
SPACES.implement("conv1d", Conv1DSpace)
SPACES.implement("declared", DeclaredSpace)




__all__ = ["Arch", "InvalidArchitecture", "SearchSpace", "SPACES", "make_space"]
