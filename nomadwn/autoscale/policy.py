"""What the strategy knows of one autoscaled flavour, in plain numbers (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

from nomadwn.model import AutoscalerService, Flavour
from nomadwn.pool import Capacity, Demand, JobShape
from nomadwn.units import duration_seconds


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything :func:`decide` needs to know about a flavour, in plain numbers.

    ``retirement`` is the flavour's ``lifespan.retirement`` in seconds (its workers'
    ``MAXJOBRETIREMENTTIME``): a graceful drain evicts a payload that long after its
    start, so a drain must end ``drain_margin`` seconds before that. ``schedds`` and
    ``min_schedds``: what an observation must hear from not to be blind.
    """

    min: int
    max: int
    worker_cores: int
    worker_memory_mb: int
    max_scale_up: int
    max_scale_down: int
    ramp: float
    cooldown: float
    cooldown_on_scale_up: float
    stale_after: float
    scale_from_zero: bool
    can_scale_in: bool
    priority: int = 0
    schedds: tuple[str, ...] = ()
    min_schedds: int = 1
    retirement: float = 0.0
    drain_margin: float = 600.0

    def __post_init__(self) -> None:
        if not 0 <= self.min <= self.max:
            raise ValueError(f"need 0 <= min <= max, got min={self.min} max={self.max}")
        if self.worker_cores < 1 or self.worker_memory_mb < 1:
            raise ValueError("a worker has at least one core and 1 MiB of memory")
        if self.max_scale_up < 1 or self.max_scale_down < 0 or self.ramp < 1:
            raise ValueError("need max_scale_up >= 1, max_scale_down >= 0 and ramp >= 1")

    @property
    def size(self) -> Capacity:
        """One worker's cores and memory."""
        return Capacity(self.worker_cores, self.worker_memory_mb)

    def fits(self, shape: JobShape) -> bool:
        """Whether one job of ``shape`` fits one worker of this flavour."""
        return shape.cpus <= self.worker_cores and shape.memory_mb <= self.worker_memory_mb

    def fitting(self, demand: Demand) -> int:
        """How many of the idle jobs fit one worker."""
        return sum(s.count for s in demand.shapes if self.fits(s))

    @classmethod
    def of(cls, flavour: Flavour, autoscaler: AutoscalerService | None = None) -> Policy:
        """The policy of a flavour with ``autoscale`` and ``scaling`` blocks, in a site with ``autoscaler``."""
        auto, bounds = flavour.autoscale, flavour.scaling
        if auto is None or bounds is None:
            raise ValueError("the flavour has no autoscale and scaling blocks")
        expected = autoscaler.schedds if autoscaler is not None else 1
        slots = flavour.htcondor.slots
        cores = slots.cores or flavour.resources.cores or max(1, (flavour.resources.cpu or 1000) // 1000)
        return cls(
            min=bounds.min,
            max=bounds.max,
            worker_cores=cores,
            worker_memory_mb=slots.memory or flavour.resources.memory_max or flavour.resources.memory,
            max_scale_up=auto.max_scale_up,
            max_scale_down=auto.max_scale_down,
            ramp=auto.ramp,
            cooldown=duration_seconds(auto.cooldown),
            cooldown_on_scale_up=duration_seconds(auto.cooldown_on_scale_up),
            stale_after=duration_seconds(auto.stale_after),
            scale_from_zero=auto.scale_from_zero,
            can_scale_in=flavour.kind != "batch",
            priority=auto.priority,
            retirement=duration_seconds(flavour.lifespan.retirement) if flavour.lifespan.retirement else 0.0,
            # Two evaluations and a minute: time to see a payload near its retirement and cancel the drain.
            drain_margin=2 * duration_seconds(auto.evaluation_interval) + 60,
            schedds=tuple(expected) if isinstance(expected, list) else (),
            min_schedds=len(expected) if isinstance(expected, list) else expected,
        )
