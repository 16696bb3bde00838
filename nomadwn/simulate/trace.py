"""Queue histories for the simulator: the Parallel Workloads Archive's SWF and HTCondor history.

A :class:`Trace` is the jobs of a history that actually ran, as four parallel arrays
(submit offset, run time, cores, memory), sorted by submit time. Arrays, not one object
per job, keep the nine-month LPC-EGEE trace (234,889 jobs) at a few MB and make
replaying it many times (the static-baseline search) cheap.

**SWF** (``.swf``, ``.swf.gz``; https://www.cs.huji.ac.il/labs/parallel/workload/swf.html):
one job per line, whitespace-separated, ``;`` lines are the header. Fields used (1-based):
2 submit time (s since the log's ``UnixStartTime``), 3 wait, 4 run time, 5 allocated
processors, 8 requested processors, 10 requested memory (KB per processor, -1 unknown),
11 status. A job that never ran (run time -1, or no allocated processor: cancelled
while queued) is skipped and counted in :attr:`Trace.skipped`.

**HTCondor history** (anything else, optionally ``.gz``): the output of
``condor_history -af QDate JobStartDate RemoteWallClockTime RequestCpus RequestMemory``
(whitespace-separated) or the same with ``-af:,`` (comma-separated). A first line
naming the columns (``QDate,JobStartDate,...``) may reorder them, and may give the
wait in seconds (a column named ``wait``) instead of ``JobStartDate``. ``undefined``
in ``JobStartDate``/``RemoteWallClockTime`` means the job never ran: skipped.
RequestMemory is MB; an undefined one takes the default.

Malformed lines raise :class:`~nomadwn.errors.ConfigError` naming the file, the line
number and the field.
"""

from __future__ import annotations

import gzip
import re
from array import array
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from nomadwn.errors import ConfigError, FieldProblem
from nomadwn.units import parse_duration_ns

DEFAULT_MEMORY_PER_CORE_MB = 2000
"""Memory a job asks for per core when the trace does not say (the WLCG norm: 2 GB per core)."""

_MAX_PROBLEMS = 10


@dataclass(frozen=True)
class Trace:
    """Jobs that ran, sorted by submit time: ``submit`` is seconds after ``start`` (an epoch)."""

    source: str
    start: float
    submit: array[float]
    run: array[float]
    cpus: array[int]
    memory_mb: array[int]
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.submit)

    @property
    def span(self) -> float:
        """Seconds from the window's start to its last submit."""
        return self.submit[-1] if len(self.submit) else 0.0

    def core_hours(self) -> float:
        """Core-hours the jobs ran for."""
        return sum(r * c for r, c in zip(self.run, self.cpus, strict=True)) / 3600


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.rows: list[tuple[float, float, int, int]] = []
        self.skipped = 0
        self.problems: list[FieldProblem] = []
        self.start = 0.0

    def problem(self, line: int, message: str) -> None:
        self.problems.append(FieldProblem(f"line {line}", message))
        if len(self.problems) >= _MAX_PROBLEMS:
            self.fail()

    def fail(self) -> None:
        raise ConfigError(self.source, self.problems, context=" in the trace (fix or delete those lines)")

    def build(self, start: float) -> Trace:
        if self.problems:
            self.fail()
        self.rows.sort(key=lambda r: r[0])
        base = self.rows[0][0] if self.rows else 0.0
        return Trace(
            source=self.source,
            start=start + base,
            submit=array("d", (r[0] - base for r in self.rows)),
            run=array("d", (r[1] for r in self.rows)),
            cpus=array("i", (r[2] for r in self.rows)),
            memory_mb=array("i", (r[3] for r in self.rows)),
            skipped=self.skipped,
        )


def _open(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return path.open(encoding="utf-8", errors="replace")


def is_swf(path: Path) -> bool:
    """Whether ``path`` names an SWF file (``.swf`` or ``.swf.gz``)."""
    name = path.name.lower()
    return name.endswith(".swf") or name.endswith(".swf.gz")


def read_trace(path: Path, *, memory_per_core_mb: int = DEFAULT_MEMORY_PER_CORE_MB) -> Trace:
    """Read an SWF file or an HTCondor history (see the module docstring)."""
    if not path.is_file():
        raise ConfigError(
            str(path), [FieldProblem("", "no such file; give an .swf, .swf.gz or condor_history file")], context=""
        )
    try:
        if is_swf(path):
            return read_swf(path, memory_per_core_mb=memory_per_core_mb)
        return read_history(path, memory_per_core_mb=memory_per_core_mb)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ConfigError(str(path), [FieldProblem("", f"cannot read it: {exc}")], context="") from exc


_SWF_FIELDS = {2: "submit time", 3: "wait time", 4: "run time", 5: "allocated processors", 8: "requested processors"}
_SWF_FIELDS |= {10: "requested memory", 11: "status"}
_UNIX_START = re.compile(r";\s*UnixStartTime:\s*(\d+)")


def read_swf(path: Path, *, memory_per_core_mb: int = DEFAULT_MEMORY_PER_CORE_MB) -> Trace:
    """Read a Standard Workload Format file (fields in the module docstring)."""
    b = _Builder(str(path))
    start = 0.0
    with _open(path) as lines:
        _swf_lines(b, lines, memory_per_core_mb)
        start = b.start
    return b.build(start)


def _swf_lines(b: _Builder, lines: TextIO, memory_per_core_mb: int) -> None:
    for n, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        if text.startswith(";"):
            found = _UNIX_START.match(text)
            if found:
                b.start = float(found.group(1))
            continue
        fields = text.split()
        if len(fields) < 11:
            b.problem(n, f"an SWF job line has 18 fields, this one has {len(fields)}")
            continue
        values: dict[int, float] = {}
        for index, name in _SWF_FIELDS.items():
            try:
                values[index] = float(fields[index - 1])
            except ValueError:
                b.problem(n, f"field {index} ({name}) is not a number: {fields[index - 1][:20]!r}")
                break
        else:
            submit, run, alloc, req, mem_kb = (values[i] for i in (2, 4, 5, 8, 10))
            if submit < 0:
                b.problem(n, f"field 2 (submit time) is negative: {submit:g}")
                continue
            if run < 0 or alloc == 0:
                b.skipped += 1  # never ran (cancelled while queued, or no run time recorded)
                continue
            cpus = int(req if req > 0 else alloc if alloc > 0 else 1)
            memory = int(mem_kb * cpus / 1024) if mem_kb > 0 else memory_per_core_mb * cpus
            b.rows.append((submit, run, cpus, max(1, memory)))


_HISTORY_COLUMNS = ("qdate", "jobstartdate", "remotewallclocktime", "requestcpus", "requestmemory")


def read_history(path: Path, *, memory_per_core_mb: int = DEFAULT_MEMORY_PER_CORE_MB) -> Trace:
    """Read ``condor_history -af QDate JobStartDate RemoteWallClockTime RequestCpus RequestMemory`` output."""
    b = _Builder(str(path))
    with _open(path) as lines:
        _history_lines(b, lines, memory_per_core_mb)
    return b.build(0.0)


def _history_lines(b: _Builder, lines: TextIO, memory_per_core_mb: int) -> None:
    columns: tuple[str, ...] = _HISTORY_COLUMNS
    first = True
    for n, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = [f.strip() for f in (text.split(",") if "," in text else text.split())]
        if first:
            first = False
            if any(f.lower() == "qdate" for f in fields):
                columns = tuple(f.lower() for f in fields)
                missing = {"qdate", "remotewallclocktime"} - set(columns)
                if not ({"jobstartdate", "wait"} & set(columns)):
                    missing.add("jobstartdate (or wait)")
                if missing:
                    b.problem(n, f"the header names no column {', '.join(sorted(missing))}")
                    b.fail()
                continue
        if len(fields) != len(columns):
            b.problem(n, f"expected {len(columns)} fields ({', '.join(columns)}), found {len(fields)}")
            continue
        row = dict(zip(columns, fields, strict=True))
        parsed: dict[str, float | None] = {}
        bad = False
        for key in ("qdate", "jobstartdate", "wait", "remotewallclocktime", "requestcpus", "requestmemory"):
            if key not in row:
                continue
            value = row[key]
            if value.lower() == "undefined":
                parsed[key] = None
                continue
            try:
                parsed[key] = float(value)
            except ValueError:
                b.problem(n, f"{key} is not a number: {value[:20]!r}")
                bad = True
                break
        if bad:
            continue
        qdate = parsed.get("qdate")
        if qdate is None:
            b.problem(n, "qdate is undefined")
            continue
        started = parsed.get("jobstartdate") if "jobstartdate" in row else parsed.get("wait")
        run = parsed.get("remotewallclocktime")
        if started is None or run is None:
            b.skipped += 1  # never ran
            continue
        cpus = int(parsed.get("requestcpus") or 1)
        memory = parsed.get("requestmemory")
        b.rows.append(
            (qdate, run, max(1, cpus), int(memory) if memory and memory > 0 else memory_per_core_mb * max(1, cpus))
        )


def window(trace: Trace, *, start: str | None = None, days: float | None = None, scale: float = 1.0) -> Trace:
    """The jobs submitted in a window, with arrivals ``scale`` times as dense.

    ``start`` is an offset from the trace's first submit (``30d``, ``12h``) or an ISO
    date (``2004-10-01``, UTC unless it says otherwise); ``days`` is the window's
    length (None: to the end). ``scale`` > 1 divides the gaps between submits (the
    arrival rate is multiplied by it); run times stay as recorded.
    """
    if not scale > 0:
        raise ConfigError("--scale", [FieldProblem("", f"must be a positive number, not {scale:g}")], context="")
    if days is not None and not days > 0:
        raise ConfigError("--days", [FieldProblem("", f"must be a positive number of days, not {days:g}")], context="")
    if len(trace) == 0:
        raise ConfigError(
            trace.source,
            [FieldProblem("", f"no job in it ever ran ({trace.skipped} never started)")],
            context=" in the trace",
        )
    offset = 0.0
    if start:
        offset = parse_start(start, trace.start)
    end = offset + days * 86400 if days is not None else float("inf")
    keep = [i for i, s in enumerate(trace.submit) if offset <= s < end]
    if not keep:
        raise ConfigError(
            trace.source,
            [FieldProblem("", f"no job was submitted in the window (the trace spans {trace.span / 86400:.1f} days)")],
            context=" for --start/--days",
        )
    base = trace.submit[keep[0]]
    return Trace(
        source=trace.source,
        start=trace.start + base,
        submit=array("d", ((trace.submit[i] - base) / scale for i in keep)),
        run=array("d", (trace.run[i] for i in keep)),
        cpus=array("i", (trace.cpus[i] for i in keep)),
        memory_mb=array("i", (trace.memory_mb[i] for i in keep)),
        skipped=trace.skipped,
    )


def parse_start(text: str, trace_start: float) -> float:
    """``--start`` as seconds after the trace's first submit (an offset such as ``30d``, or an ISO date)."""
    try:
        return parse_duration_ns(text) / 1e9
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            "--start",
            [FieldProblem("", "give an offset from the first submit (30d, 12h) or an ISO date (2004-10-01)")],
            context="",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - trace_start)
