"""What the launcher says about this process: which job it belongs to, its rank, the size.

Launchers announce themselves through environment variables: MPICH's and Intel MPI's Hydra
(``PMI_RANK``, ``PMI_SIZE``, ``MPI_LOCALRANKID``), Open MPI (``OMPI_COMM_WORLD_*``), MVAPICH
(``MV2_COMM_WORLD_*``), Slurm's srun (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``) and
the ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` convention of torchrun-style launchers. None of them
set: a world of one.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from .comm import DistributedError

__all__ = ["LaunchInfo", "launch_info"]


class LaunchInfo(NamedTuple):
    launcher: str  # which convention the variables follow
    rank: int
    size: int
    local_rank: int | None  # rank among the processes of this machine, when the launcher says


# (launcher, rank variable, size variable, local-rank variable), most specific first: an MPI
# launcher inside a Slurm allocation sets both, and MPI's numbering is the one that counts
_CONVENTIONS = (
    ("Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
    ("MVAPICH", "MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_LOCAL_RANK"),
    ("Hydra (MPICH, Intel MPI)", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
    ("Slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),
    ("RANK/WORLD_SIZE", "RANK", "WORLD_SIZE", "LOCAL_RANK"),
)


def _int(env, name: str, launcher: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise DistributedError(f"dist.init: the {launcher} launcher's variable {name}={raw!r} "
                               "is not an integer") from None


def launch_info(env=None) -> LaunchInfo | None:
    """The first convention whose rank and size variables are both set, or None."""
    env = os.environ if env is None else env
    for launcher, rv, sv, lv in _CONVENTIONS:
        rank, size = _int(env, rv, launcher), _int(env, sv, launcher)
        if rank is None or size is None:
            continue
        if not (size >= 1 and 0 <= rank < size):
            raise DistributedError(f"dist.init: the {launcher} launcher's variables say rank "
                                   f"{rv}={rank} of {sv}={size}; expected 0 <= rank < size")
        return LaunchInfo(launcher, rank, size, _int(env, lv, launcher))
    return None
