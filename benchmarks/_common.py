"""Helpers shared by the benchmark scripts: where the shared data is, what machine ran the
benchmark, and writing a result JSON atomically into ``benchmarks/results/``."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pin_one_core() -> None:
    """One thread on one core, for timings comparable with MLIP-2's single-core figures. Call
    before JAX is imported: XLA reads these at start-up, and its CPU runtime still uses every
    visible core for some loops despite the thread flags, hence the affinity."""
    os.environ["XLA_FLAGS"] = ONE_THREAD
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def shared_data() -> Path:
    """``$MLIPRESS_SHARED_DATA`` or ``<repo>/../shared/data``; exits with a message if absent."""
    env = os.environ.get("MLIPRESS_SHARED_DATA")
    path = Path(env) if env else ROOT.parent / "shared" / "data"
    if not path.is_dir():
        sys.exit(f"shared data not found at {path}: set MLIPRESS_SHARED_DATA")
    return path


def machine(threads: int = 1) -> dict:
    """Platform, CPU model, thread count and the load when the benchmark started (timings on a
    loaded machine are inflated: the load average is recorded so readers can tell)."""
    import jax

    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores_visible": os.cpu_count(),
        "threads": threads,
        "load_average_1min_at_start": load,
        "jax": jax.__version__,
        "python": platform.python_version(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def write_result(name: str, result: dict) -> Path:
    """Write ``benchmarks/results/<name>`` atomically (temp file + rename)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / name
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    return out
