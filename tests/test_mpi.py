"""Data-parallel fitting (:mod:`mlipress.parallel`): sharding, ordered reductions, and
``mpirun -np 2 mlipress train`` against the serial fit.

Without MPI, two ranks are simulated by two threads sharing an allgather (:class:`ThreadComm`):
every reduced data pass (loss, gradient, linear solves, Gauss-Newton diagonal, error
statistics) must equal the serial one bit for bit. With mpi4py and ``mpirun`` installed, the
command line is run on 2 ranks and its potential compared with the serial run's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import jax
import numpy as np
import pytest

from mlipress import parallel
from mlipress.batch import chunk_plan
from mlipress.examples import make_example_dataset
from mlipress.fit.linear import linear_solves
from mlipress.fit.precondition import gauss_newton_diagonal
from mlipress.fit.trainer import rmse
from mlipress.io.atomic import atomic_write
from mlipress.loss import Objective, prepare
from mlipress.models.mtp.basis import untrained_mtp


class ThreadComm:
    """Rank ``rank`` of ``size`` threads: the collectives of :class:`mlipress.parallel.Serial`."""

    def __init__(self, rank: int, size: int, slots: list, barrier: threading.Barrier):
        self.rank, self.size, self._slots, self._barrier = rank, size, slots, barrier

    def allgather(self, obj) -> list:
        self._slots[self.rank] = obj
        self._barrier.wait()
        out = list(self._slots)
        self._barrier.wait()
        return out

    def bcast(self, obj):
        return self.allgather(obj)[0]


def on_threads(size: int, fn):
    """``[fn(comm) for each rank]``, the ranks running concurrently in threads."""
    slots, barrier = [None] * size, threading.Barrier(size, timeout=120)
    results, errors = [None] * size, []

    def run(r):
        try:
            results[r] = fn(ThreadComm(r, size, slots, barrier))
        except BaseException as exc:  # noqa: BLE001  (re-raised below)
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_shard_balances_padded_sizes_deterministically():
    costs = [2000, 2000, 2000, 3000, 2000, 1000, 2000]
    plan = parallel.shard(costs, 3)
    assert sorted(i for p in plan for i in p) == list(range(7))
    loads = [sum(costs[i] for i in p) for p in plan]
    assert max(loads) - min(loads) <= 1000 and loads == [5000, 5000, 4000]
    assert plan == parallel.shard(costs, 3) and all(p == sorted(p) for p in plan)
    assert parallel.shard(costs, 1) == [list(range(7))]
    with pytest.raises(ValueError, match="cannot be shared"):
        parallel.shard([1, 2], 3)


def test_chunk_plan_rounds_to_a_multiple_of_the_ranks():
    sizes = [32] * 12  # 384 atoms
    assert len(chunk_plan(sizes, 2048)) == 1
    assert len(chunk_plan(sizes, 2048, multiple=2)) == 2
    assert len(chunk_plan(sizes, 150, multiple=2)) == 4  # 3 chunks needed, rounded up to 4
    assert len(chunk_plan([32] * 3, 2048, multiple=4)) == 3  # never more chunks than configurations
    assert sum(len(g) for g, _, _ in chunk_plan(sizes, 150, multiple=2)) == 12


def test_chunk_sum_and_gather_follow_global_chunk_order():
    # rank 0 holds chunks 0 and 2, rank 1 chunk 1: sums and gathers in order 0, 1, 2
    values = {0: (np.float64(0.1), {"a": np.array([1e16, 1.0])}), 1: (np.float64(0.2), {"a": np.array([-1e16, 1.0])}),
              2: (np.float64(0.3), {"a": np.array([1.0, 1.0])})}
    ids = [[0, 2], [1]]
    out = on_threads(2, lambda c: (parallel.chunk_sum(c, ids[c.rank], [values[i] for i in ids[c.rank]]),
                                   parallel.chunk_gather(c, ids[c.rank], [f"chunk {i}" for i in ids[c.rank]])))
    for total, gathered in out:
        assert float(total[0]) == (0.1 + 0.2) + 0.3
        assert np.asarray(total[1]["a"]).tolist() == [1.0, 3.0]  # (1e16 - 1e16) + 1, not 1e16 + 1 - 1e16
        assert gathered == ["chunk 0", "chunk 1", "chunk 2"]
    serial = parallel.chunk_sum(parallel.SERIAL, [0, 1, 2], [values[i] for i in range(3)])
    assert float(serial[0]) == float(out[0][0][0])


@pytest.fixture(scope="module")
def problem():
    ds, _ = make_example_dataset(12, seed=3)
    mtp = untrained_mtp(4, 3, 2.0, 5.0)
    return ds, mtp, mtp.init(1)


def test_sharded_data_passes_equal_serial_bit_for_bit(problem):
    ds, mtp, params = problem
    max_atoms = 100  # 4 chunks of 3 configurations, also for 2 ranks

    def passes(comm):
        data = prepare(ds, mtp, max_atoms=max_atoms, comm=comm)
        obj = Objective(mtp, data)
        f, g = obj.value_and_grad(params)
        solved = linear_solves(mtp, params, data)[0]
        return {"chunks": data.ids, "f": f, "value": obj.value(params), "terms": obj.terms(params),
                "grad": np.asarray(jax.flatten_util.ravel_pytree(g)[0]), "solve": solved[1],
                "theta": np.asarray(solved[0].linear),
                "gn": gauss_newton_diagonal(obj, params, probes=2, projected=True), "rmse": rmse(mtp, params, data)}

    serial = passes(parallel.SERIAL)
    ranks = on_threads(2, passes)
    assert serial["chunks"] == (0, 1, 2, 3) and ranks[0]["chunks"] + ranks[1]["chunks"] in ((0, 2, 1, 3), (0, 1, 2, 3))
    for r in ranks:
        assert r["f"] == serial["f"] and r["value"] == serial["value"] and r["terms"] == serial["terms"]
        assert np.array_equal(r["grad"], serial["grad"]) and np.array_equal(r["gn"], serial["gn"])
        assert r["solve"] == serial["solve"] and np.array_equal(r["theta"], serial["theta"])
        assert r["rmse"] == serial["rmse"]
    # one chunk for two ranks: split into one chunk each
    assert on_threads(2, lambda c: prepare(ds, mtp, comm=c).ids) == [(0,), (1,)]
    # the Gauss-Newton probes are drawn per configuration: another chunking changes only round-off
    one = Objective(mtp, prepare(ds, mtp, max_atoms=2048))
    np.testing.assert_allclose(gauss_newton_diagonal(one, params, probes=2, projected=True), serial["gn"], rtol=1e-9)


def test_launch_detection_and_rank_zero_writes(tmp_path):
    assert parallel.launched_ranks({}) == 1
    assert parallel.launched_ranks({"PMI_SIZE": "4"}) == 4
    assert parallel.launched_ranks({"OMPI_COMM_WORLD_SIZE": "1", "MV2_COMM_WORLD_SIZE": "2"}) == 2
    assert parallel.launched_ranks({"SLURM_NTASKS": "8"}) == 1  # an allocation is not a launch
    assert parallel.world() is parallel.SERIAL
    try:
        parallel.use(ThreadComm(1, 2, [None, None], threading.Barrier(1)))
        atomic_write(tmp_path / "rank1.txt", "not written")
        assert not parallel.is_root() and not list(tmp_path.iterdir())
    finally:
        parallel.use(None)
    atomic_write(tmp_path / "rank0.txt", "written")
    assert (tmp_path / "rank0.txt").read_text() == "written"


def test_serial_run_never_imports_mpi4py():
    env = {k: v for k, v in os.environ.items() if k not in parallel.LAUNCHER_SIZE_VARIABLES}
    code = ("import sys; from mlipress import parallel; import mlipress.cli, mlipress.fit, mlipress.compress; "
            "assert parallel.from_environment() is parallel.SERIAL; print('mpi4py' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"


# ----------------------------------------------------------------------------------------
# mpirun -np 2 mlipress train
# ----------------------------------------------------------------------------------------


def _mpirun() -> str | None:
    local = Path(sys.executable).with_name("mpirun")
    return str(local) if local.exists() else shutil.which("mpirun")


def _mpi_missing() -> str:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install 'mlipress[mpi]')"
    return "" if _mpirun() else "no mpirun on PATH or next to the Python executable"


def _fit(tmp_path: Path, ranks: int, extra: list[str], name: str) -> tuple[list[dict], bytes]:
    log, out = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.mtp"
    cmd = [sys.executable, "-m", "mlipress", "train", "--level", "4", "--train", str(tmp_path / "train.cfg"),
           "--species", "Cu,Ag,Au", "--max-iter", "8", "--ftol", "0", "--gtol", "0", "--log-every", "2", "--max-atoms", "200",
           "--log", str(log), "-o", str(out), *extra]
    if ranks > 1:
        cmd = [_mpirun(), "-np", str(ranks), *cmd]
    # the ranks reuse the serial run's compiled XLA from a persistent cache (CPU time 26 s, not 45 s)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "JAX_COMPILATION_CACHE_DIR": str(tmp_path.parent / "xla-cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    return [json.loads(x) for x in log.read_text().splitlines()], out.read_bytes()


@pytest.mark.skipif(bool(_mpi_missing()), reason=_mpi_missing() or "MPI available")
@pytest.mark.parametrize("extra", [[], pytest.param(["--radial", "mf:2"], marks=pytest.mark.slow),
                                   pytest.param(["--radial", "tt:2,2,2"], marks=pytest.mark.slow)],
                         ids=["dense", "mf", "tt"])
def test_mpirun_two_ranks_equals_serial(tmp_path, extra):
    from mlipress.io import write_dataset

    ds, species = make_example_dataset(12, seed=2)
    write_dataset(ds, tmp_path / "train.cfg", species=species)
    serial, serial_mtp = _fit(tmp_path, 1, extra, "serial")
    mpi, mpi_mtp = _fit(tmp_path, 2, extra, "mpi")
    f_serial = [r["f"] for r in serial if "f" in r]
    f_mpi = [r["f"] for r in mpi if "f" in r]
    assert len(f_serial) == len(f_mpi) >= 5 and [r["event"] for r in serial] == [r["event"] for r in mpi]
    np.testing.assert_allclose(f_mpi, f_serial, rtol=1e-10, atol=0)
    assert serial[-1]["iteration"] == mpi[-1]["iteration"] == 8
    # 2 chunks either way (--max-atoms 200): the same sums in the same order, the same files
    assert f_mpi == f_serial and mpi_mtp == serial_mtp
    if extra:  # the factors sidecar (a zip: compare its arrays, not its time stamps)
        a, b = (np.load(tmp_path / f"{name}.mtp.factors.npz") for name in ("mpi", "serial"))
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
