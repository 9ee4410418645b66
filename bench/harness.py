"""What every benchmark shares: machine facts read from the machine, timing, peak memory, and one
writer that puts ``bench/results/<name>.json`` and ``.md`` on disk from the same data.

    from bench import harness
    with harness.timed() as t:
        ...
    harness.write_results("clustering_speed", data, markdown_text)

A results file is written whole by the command that names it: ``write_results`` records that command
(``sys.argv``) and the machine's facts beside the data, and writes each file to a temporary name
first, then renames it, so a killed run never leaves half a file.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import shlex
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def _cpuinfo_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _mem_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _versions() -> dict[str, str]:
    out = {}
    for name in ("numpy", "torch", "faiss", "cv2", "django"):
        mod = sys.modules.get(name)
        if mod is not None and hasattr(mod, "__version__"):
            out[name] = str(mod.__version__)
    return out


def facts(**extra: Any) -> dict[str, Any]:
    """CPU model and count (and how many this process may use), memory, load, OS, Python and the
    versions of the numeric libraries already imported."""
    return {
        "cpu": _cpuinfo_model() or platform.processor(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": _mem_gib(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        **_versions(),
        **extra,
    }


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


@dataclass
class Timer:
    seconds: float = 0.0


@contextmanager
def timed() -> Iterator[Timer]:
    """``with timed() as t: ...`` then ``t.seconds`` (wall clock, perf_counter)."""
    t, t0 = Timer(), time.perf_counter()
    try:
        yield t
    finally:
        t.seconds = time.perf_counter() - t0


def command() -> str:
    """The command line that is running, as typed (relative to the project root); ``python -m bench.x`` when it
    was started so (a script that imports the project runs from the root as a module, not by its path)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return shlex.join([".venv/bin/python", "-m", spec.name.removesuffix(".__main__"), *sys.argv[1:]])
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(ROOT)
    except ValueError:
        pass
    return shlex.join([".venv/bin/python", str(script), *sys.argv[1:]])  # quoted: it can be pasted as it is


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_results(name: str, data: dict[str, Any], markdown: str, *, out_dir: Path | None = None) -> tuple[Path, Path]:
    """Write ``<name>.json`` (``data`` plus ``command`` and ``machine`` where it has none) and ``<name>.md``.

    The markdown is headed by the command and the machine when it does not name the command itself.
    """
    out_dir = Path(out_dir or RESULTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {"command": command(), "machine": facts(), **data}
    js, md = out_dir / f"{name}.json", out_dir / f"{name}.md"
    _write_atomic(js, json.dumps(data, indent=1, default=_jsonable) + "\n")
    if data["command"] not in markdown:
        markdown = (f"<!-- written by `{data['command']}` -->\n\nCommand: `{data['command']}`  \n"
                    f"Machine: {json.dumps(data['machine'])}\n\n" + markdown)
    _write_atomic(md, markdown.rstrip() + "\n")
    return js, md


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)
