"""GradientAccumulator: sum gradients over micro-batches, then average them for one step."""

from __future__ import annotations

from ..errors import ArgumentError, ShapeError, describe
from ..tensor import Tensor

__all__ = ["AccumulatedGradients", "GradientAccumulator"]


class AccumulatedGradients(list):
    """The list ``sum()``/``average()`` return. ``step_skipped`` is true when any micro-batch's
    gradients came from an AMP tape that found an inf or NaN, so the optimizer skips the step."""

    def __init__(self, items, step_skipped: bool = False):
        super().__init__(items)
        self.step_skipped = bool(step_skipped)


class GradientAccumulator:
    """Accumulate per-parameter gradients over several micro-batches::

        acc = ag.optim.GradientAccumulator()
        for xb, yb in micro_batches:
            with ag.GradientTape() as tape:
                loss = loss_fn(model(xb), yb)
            acc.add(tape.gradient(loss, params))
        opt.step(acc.average())     # the mean over micro-batches
        acc.reset()

    Sums are kept as backend arrays, outside any tape. ``None`` entries (unconnected
    parameters) stay None until some micro-batch gives that parameter a gradient. The AMP skip
    flag (``grads.step_skipped``) of any micro-batch carries over to the result.
    """

    def __init__(self):
        self._sums: list | None = None
        self._bks: list | None = None
        self.count = 0
        self.step_skipped = False

    def add(self, grads) -> None:
        if getattr(grads, "step_skipped", False):
            self.step_skipped = True
        grads = [grads] if isinstance(grads, Tensor) else list(grads)
        if self._sums is not None and len(grads) != len(self._sums):
            raise ShapeError(
                f"GradientAccumulator.add: argument 'grads' expected {len(self._sums)} entries "
                f"like the first micro-batch, got {len(grads)}"
            )
        if self._sums is None:
            self._sums = [None] * len(grads)
            self._bks = [None] * len(grads)
        for i, g in enumerate(grads):
            if g is None:
                continue
            if not isinstance(g, Tensor):
                raise ArgumentError(
                    f"GradientAccumulator.add: grads[{i}] expected a Tensor or None, "
                    f"got {describe(g)}"
                )
            s = self._sums[i]
            if s is None:
                self._sums[i] = g._data.copy()
                self._bks[i] = g._bk
            else:
                if s.shape != g.shape:
                    raise ShapeError(
                        f"GradientAccumulator.add: grads[{i}] expected shape {s.shape}, "
                        f"got {g.shape}"
                    )
                s += g._data
        self.count += 1

    def _result(self, scale):
        if self._sums is None:
            return AccumulatedGradients([], self.step_skipped)
        out = []
        for s, bk in zip(self._sums, self._bks):
            out.append(None if s is None else Tensor(s * scale if scale != 1 else s.copy(), bk))
        return AccumulatedGradients(out, self.step_skipped)

    def sum(self) -> list:
        """The accumulated sums (new Tensors; the accumulator keeps its own)."""
        return self._result(1)

    def average(self) -> list:
        """The sums divided by the number of ``add`` calls."""
        if self.count == 0:
            raise ArgumentError("GradientAccumulator.average: nothing was added")
        return self._result(1.0 / self.count)

    gradients = sum

    def reset(self) -> None:
        self._sums = self._bks = None
        self.count = 0
        self.step_skipped = False

    def __len__(self) -> int:
        return self.count
