"""What a checkpointing tape is asked to do: the strategies, their config, the budget error."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ArgumentError, AutogradError, describe
from ..options import OptionEnum

__all__ = ["CheckpointStrategy", "CheckpointConfig", "CheckpointBudgetError", "as_config", "MB"]

MB = 1024.0 * 1024.0


class CheckpointStrategy(OptionEnum):
    NONE = "none"
    SELECTIVE = "selective"
    BLOCK = "block"
    FULL = "full"
    AUTO = "auto"


class CheckpointBudgetError(AutogradError, MemoryError):
    """AUTO checkpointing cannot keep the activation memory under ``memory_budget_mb``."""


@dataclass
class CheckpointConfig:
    """What a tape keeps and what it recomputes (see docs/checkpointing.md)."""

    strategy: CheckpointStrategy = CheckpointStrategy.SELECTIVE
    checkpoint_every_n: int = 3
    min_compute_cost: float = 100.0
    memory_budget_mb: float | None = None

    def __post_init__(self):
        self.strategy = CheckpointStrategy.parse(self.strategy, "CheckpointConfig", "strategy")
        n = self.checkpoint_every_n
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ArgumentError(
                f"CheckpointConfig: argument 'checkpoint_every_n' expected an int >= 1, got {n!r}"
            )
        c = self.min_compute_cost
        # written so that NaN fails: every comparison with NaN is false
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not c >= 0:
            raise ArgumentError(
                f"CheckpointConfig: argument 'min_compute_cost' expected a number >= 0, got {c!r}"
            )
        b = self.memory_budget_mb
        if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float))
                              or not 0 < b < float("inf")):
            raise ArgumentError(
                f"CheckpointConfig: argument 'memory_budget_mb' expected a finite number > 0 or "
                f"None, got {b!r}"
            )
        if self.strategy is CheckpointStrategy.AUTO and b is None:
            raise ArgumentError(
                "CheckpointConfig: strategy AUTO expected 'memory_budget_mb' (a number of MB), "
                "got None"
            )


def as_config(cfg) -> CheckpointConfig | None:
    """A tape's ``checkpoint`` argument as a config: None, a config, or a strategy (name)."""
    if cfg is None or isinstance(cfg, CheckpointConfig):
        return cfg
    if isinstance(cfg, (str, CheckpointStrategy)):
        return CheckpointConfig(strategy=cfg)
    raise ArgumentError(
        f"GradientTape: argument 'checkpoint' expected a CheckpointConfig, a strategy or None, "
        f"got {describe(cfg)}"
    )
