"""Helpers shared by the benchmark scripts: where the shared data is, the loaders of its data
sets (NbMoTaW, mlearn), what machine ran the benchmark, and writing a result JSON atomically
into ``benchmarks/results/``.

Contract: a benchmark script reads the shared data only through these loaders, so every
script sees the same configurations in the same order (the NbMoTaW groups are the maml
``*.json`` files of ``nbmotaw/``, sorted by name; training groups are those not ending in
``_Test``, validation groups the ``*_Test`` ones). Importing this module puts the repository
on ``sys.path`` and imports neither JAX nor mlipress, so scripts can set XLA flags after it.
"""

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


#: Type order of every NbMoTaW potential and data set here (Yin et al. 2021).
NBMOTAW_SPECIES = ("Nb", "Mo", "Ta", "W")


def nbmotaw_dir(path=None) -> Path:
    """The NbMoTaW folder: ``path`` if given, else ``<shared data>/nbmotaw``."""
    folder = Path(path) if path else shared_data() / "nbmotaw"
    if not folder.is_dir():
        sys.exit(f"NbMoTaW data not found at {folder}: pass --data DIR or set MLIPRESS_SHARED_DATA")
    return folder


def nbmotaw_groups(path=None) -> tuple[dict, dict]:
    """``(training, validation)``: the NbMoTaW groups as ``{file stem: Dataset}``, each in name
    order (validation: the ``*_Test`` files)."""
    from mlipress.io import read_maml_json

    train, valid = {}, {}
    for file in sorted(nbmotaw_dir(path).glob("*.json")):
        (valid if file.stem.endswith("_Test") else train)[file.stem] = read_maml_json(file, NBMOTAW_SPECIES)
    return train, valid


def nbmotaw(path=None):
    """``(training, validation)`` :class:`~mlipress.data.Dataset` s: the groups of
    :func:`nbmotaw_groups`, concatenated in name order."""
    from mlipress.data import Dataset

    def concat(groups):
        data = Dataset((), NBMOTAW_SPECIES)
        for part in groups.values():
            data = data + part
        return data

    train, valid = nbmotaw_groups(path)
    return concat(train), concat(valid)


def mlearn_dir(element: str) -> Path:
    """``<shared data>/mlearn/<element>`` (Zuo et al. 2020: ``training.json``, ``test.json``,
    ``zuo2020_fitted.mtp``)."""
    return shared_data() / "mlearn" / element


def mlearn(element: str, part: str = "test"):
    """The mlearn ``part`` (``"training"`` or ``"test"``) set of ``element``, one species."""
    from mlipress.io import read_maml_json

    return read_maml_json(mlearn_dir(element) / f"{part}.json", species=(element,))


def bare_evaluation_times(potential, atoms, species, calls: int) -> list[float]:
    """Seconds of each of ``calls`` jit-compiled energy+forces+stress evaluations of ``atoms``
    on one prebuilt padded batch, after a compiling call: the floor of an MD step's cost."""
    import time

    import jax

    from mlipress.calculator import MTPCalculator

    calc = MTPCalculator(potential, species=species)
    batch = calc.neighbors.batch(calc.configuration(atoms))
    jax.block_until_ready(calc.efs(calc.params, batch))
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        jax.block_until_ready(calc.efs(calc.params, batch))
        times.append(time.perf_counter() - t)
    return times


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
