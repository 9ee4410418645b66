"""Progress reporting: every long stage takes ``progress(current, total, **info)``.

A Celery task passes a callback that updates its Job row; the command line passes a ``TqdmProgress``.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Iterable

Progress = Callable[..., None]


def _fmt(value: Any) -> Any:
    return f"{value:.4g}" if isinstance(value, float) else value


class TqdmProgress:
    """A progress callback drawing tqdm bars on stderr: a new bar whenever ``info[stage_key]`` changes.

    ``show`` names the ``info`` items put beside the bar (all of them when None); ``rename`` maps a
    stage to the bar's label; ``on_update(bar, info)`` may write extra lines (e.g. one per epoch).
    """

    def __init__(
        self,
        desc: str = "",
        *,
        stage_key: str = "stage",
        show: Iterable[str] | None = None,
        unit: str | Callable[[str], str] = "it",
        rename: dict[str, str] | None = None,
        on_update: Callable[[Any, dict], None] | None = None,
    ) -> None:
        self.desc, self.stage_key = desc, stage_key
        self.show = None if show is None else set(show)
        self.unit, self.rename, self.on_update = unit, rename or {}, on_update
        self.bar = None
        self.stage: str | None = None

    def __call__(self, current: int, total: int, **info: Any) -> None:
        from tqdm import tqdm

        stage = str(info.get(self.stage_key) or self.desc)
        stage = self.rename.get(stage, stage)
        if self.bar is None or stage != self.stage:
            self.close()
            unit = self.unit(stage) if callable(self.unit) else self.unit
            self.bar = tqdm(total=total, desc=stage or None, unit=unit, file=sys.stderr, mininterval=1.0)
            self.stage = stage
        self.bar.total = total
        self.bar.n = current
        post = {k: _fmt(v) for k, v in info.items() if k != self.stage_key and (self.show is None or k in self.show)}
        if post:
            self.bar.set_postfix(post, refresh=False)
        self.bar.refresh()
        if self.on_update is not None:
            self.on_update(self.bar, info)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
