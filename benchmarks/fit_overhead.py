"""Where the per-iteration wall time of a real fit goes, next to the bare loss+gradient pass.

User report (at c0b658a): ``mlipress train --init untrained.mtp --train <342 NbMoTaW
configurations> --max-iter 30`` (level 10, 4 species, 2130 atoms in cells of 2-54 atoms,
cutoff 5) ran 75 pre-training + 30 iterations in 5 min 40 s (~3.4 s per pre-training
iteration, ~1.1 s per main iteration), while ``benchmarks/train.py`` puts a level-10
loss+gradient pass at ~38 us/atom (~0.08 s). Since 5172e42 ``--max-iter 30`` means 30
iterations in all, and variable projection (the default) has no pre-training. This script
rebuilds such a training set and measures, one thread on one core
(:func:`_common.pin_one_core`):

1. ``padding``: the chunks :func:`mlipress.loss.prepare` builds (CLI defaults: max_atoms 2048,
   MLIP-2 weights): padded vs real configurations, atoms and neighbour slots;
2. ``pass``: the bare :meth:`mlipress.loss.Objective.value_and_grad` (first call = JIT compile
   + pass, then best of ``--repeat``; wall and process CPU), the energy/force/stress pass that
   the progress-line RMSE uses, and, with ``--experiments``, the same pass with the species
   collapsed to one (same geometry), with two rewrites of the species-pair contraction of
   :meth:`mlipress.models.layers.Dense.radial_values` (swapped in for
   :func:`mlipress.models.mtp.evaluator.radial_values`, checked against the original) and with
   the chunks padded per group of configurations;
3. ``projection``: one evaluation of the variable-projection target
   (:class:`mlipress.fit.projection.ProjectedObjective`) and its parts: design matrix (the MTP's
   ``features_fn``, :func:`mlipress.models.mtp.features.mtp_features_fn`, per chunk), weighted
   rows, QR + SVD, the pass at the solved point; and one Gauss-Newton preconditioner estimate,
   reduced and at fixed theta (what every BFGS reset costs); with ``--experiments`` also the
   first BFGS steps with the package's line search and with a backtracking prototype for
   blown-up first trials;
4. ``fits``: instrumented :func:`mlipress.fit.train` runs (each in a fresh subprocess, so
   JIT caches start cold as in a CLI run) for ``--runs`` (``scheme:PRE+MAIN``: ``PRE``
   pre-training iterations (``pretrain_iters``) and ``max_iter = PRE + MAIN``; scheme ``vp`` =
   variable projection, ``mlip`` = MLIP's scheme). The package is not modified: its functions
   are wrapped from the outside (module attributes and class methods) with a nesting timer that
   books exclusive wall and CPU time per (phase bucket, context, part); compilations are
   counted with :func:`jax.monitoring.register_event_duration_secs_listener`; every BFGS step
   records ``state.n_evals`` differences and every strong-Wolfe search its trials.

The result is the per-iteration breakdown for the pre-training and main phases, the one-off
costs (setup, pre-training -> main transition, final record), each fit's whole CPU and wall
time and an extrapolation to the user's command.

Usage::

    python benchmarks/fit_overhead.py [--level 10] [--runs vp:0+30 vp:75+30 mlip:75+30]
        [--repeat 3] [--quota Elastic=66,SS=9,AIMD=2,Surface=4] [--max-atoms 2048]
        [--experiments] [--core N] [--skip-fits] [--package-root DIR] [--reference OLD.json]
        [--output fit_overhead.json]

``vp:0+30`` is the user's command now (30 iterations, no pre-training), ``vp:75+30`` the
user's run (``pretrain_iters=75`` set explicitly: 75 were the default under variable
projection until 5172e42), ``mlip:75+30`` MLIP's scheme (75 pre-training is its default);
``vp:0+60`` passes the periodic solve + optimiser reset at main iteration 50.

``--package-root DIR`` imports mlipress from DIR instead of the installed package, to measure
a commit while the working tree is being edited::

    mkdir -p /tmp/snap && git archive HEAD mlipress | tar -x -C /tmp/snap && git rev-parse HEAD > /tmp/snap/COMMIT
    python benchmarks/fit_overhead.py --package-root /tmp/snap

The snapshot must have this layout (``mlipress.fit``, ``mlipress.models``, parameter pytrees:
910650d or later). Older commits (``mlipress.training``, dict parameters, e.g. c80b1a1) are
measured by the script as of 3ea6d61; the c80b1a1 result behind ``fit_overhead.md`` sections
1-5 is ``git show 910650d:benchmarks/results/fit_overhead.json``. ``--reference OLD.json``
copies the whole-fit times of such an earlier result into this one (``reference``), for a
then/now comparison.

Data: the NbMoTaW training groups of :func:`_common.nbmotaw_groups` (``--data`` or
``$MLIPRESS_SHARED_DATA/nbmotaw``): from each group every k-th configuration of at most 54
atoms, ``quota`` configurations per group kind (default 66 per Elastic group, 9 per SS, 2 per
AIMD, 4 per Surface: 342 configurations, 2130 atoms, 2-54 atoms each). Writes
``benchmarks/results/fit_overhead.json``. The process CPU time is the robust figure when other
processes share the cores (XLA runs on one thread here); the load average is recorded at the
start and around every fit.
"""

from __future__ import annotations

import os
import sys

from _common import pin_one_core  # noqa: E402

pin_one_core()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import functools  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from _common import NBMOTAW_SPECIES as SPECIES  # noqa: E402  (puts the repo on sys.path)
from _common import machine, nbmotaw_dir, nbmotaw_groups, write_result  # noqa: E402

DEFAULT_QUOTA = "Elastic=66,SS=9,AIMD=2,Surface=4"
DEFAULT_RUNS = ["vp:0+30", "vp:75+30", "mlip:75+30"]
# the user's run at c0b658a: 75 pre-training + 30 main iterations (``--max-iter 30`` counted
# the main phase only then)
USER_RUN = {"pretrain": 75, "main": 30, "wall_s": 340.0, "pretrain_s_per_iter": 3.4, "main_s_per_iter": 1.1}
# the same command now: 30 iterations in all, no pre-training under variable projection
USER_COMMAND_NOW = {"pretrain": 0, "main": 30}


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


# ------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------


def parse_quota(text: str) -> dict:
    out = {}
    for item in text.split(","):
        kind, n = item.split("=")
        out[kind.strip()] = int(n)
    return out


def kind_of(group: str) -> str:
    """The part of a group name after the first ``_`` (``Mo_Elastic`` -> ``Elastic``)."""
    return group.split("_", 1)[1] if "_" in group else group


def training_set(folder: Path, quota: dict, max_natoms: int = 54):
    """Every k-th configuration (of at most ``max_natoms`` atoms) of each training group,
    ``quota[kind]`` of them per group. Returns ``(dataset, group of each configuration,
    configurations per group)``."""
    from mlipress.data import Dataset

    groups, _ = nbmotaw_groups(folder)
    configs, labels, counts = [], [], {}
    for name, ds in groups.items():
        q = quota.get(kind_of(name), 0)
        if q <= 0:
            continue
        eligible = [i for i, c in enumerate(ds.configurations) if c.natoms <= max_natoms]
        k = max(1, len(eligible) // q)
        picked = eligible[::k][:q]
        counts[name] = len(picked)
        for i in picked:
            configs.append(ds.configurations[i])
            labels.append(name)
    return Dataset(tuple(configs), SPECIES), labels, counts


def size_summary(ds, labels) -> dict:
    n = np.array([c.natoms for c in ds.configurations])
    hist = Counter(int(x) for x in n)
    by_kind = defaultdict(lambda: [0, 0])
    for c, lab in zip(ds.configurations, labels):
        by_kind[kind_of(lab)][0] += 1
        by_kind[kind_of(lab)][1] += c.natoms
    return {
        "configurations": int(len(n)), "atoms": int(n.sum()), "min": int(n.min()), "median": float(np.median(n)),
        "mean": float(n.mean()), "max": int(n.max()),
        "histogram_atoms_per_config": {str(k): hist[k] for k in sorted(hist)},
        "by_kind": {k: {"configurations": v[0], "atoms": v[1]} for k, v in sorted(by_kind.items())},
    }


def padding_report(ds, data, labels) -> dict:
    """Padded vs real configurations, atoms and neighbour slots of every chunk."""
    from mlipress.batch import pairs

    chunks = []
    for members, ch in zip(data.members, data.chunks):
        b = ch.batch
        A, K = b.vectors.shape[:2]
        real_atoms = int(sum(ds.configurations[k].natoms for k in members))
        real_pairs = int(np.asarray(b.mask).sum())
        chunks.append({
            "configs_real": len(members), "configs_padded": int(b.n_configs), "atoms_real": real_atoms,
            "atoms_padded": int(A), "neighbour_slots_padded": int(K), "pairs_real": real_pairs,
            "slots_padded": int(A * K), "slot_fill": real_pairs / (A * K),
        })
    per_config = [np.bincount(pairs(c, data.cutoff)[0], minlength=c.natoms) for c in ds.configurations]
    nbh = np.concatenate(per_config)
    kind_max = defaultdict(int)
    for counts, lab in zip(per_config, labels):
        kind_max[kind_of(lab)] = max(kind_max[kind_of(lab)], int(counts.max()))
    slots = sum(c["slots_padded"] for c in chunks)
    real = sum(c["pairs_real"] for c in chunks)
    return {
        "chunks": chunks, "n_chunks": len(chunks), "shapes": sorted(map(list, data.shapes)),
        "neighbours_per_atom": {"min": int(nbh.min()), "median": float(np.median(nbh)), "mean": float(nbh.mean()),
                                "max": int(nbh.max())},
        "max_neighbours_by_kind": dict(kind_max),
        "padded_over_real": {
            "configs": sum(c["configs_padded"] for c in chunks) / sum(c["configs_real"] for c in chunks),
            "atoms": sum(c["atoms_padded"] for c in chunks) / sum(c["atoms_real"] for c in chunks),
            "neighbour_slots": slots / real,
        },
    }


# ------------------------------------------------------------------------------------------
# timing helpers
# ------------------------------------------------------------------------------------------


def timed(fn):
    """(result, wall s, cpu s) of one call; JAX results are blocked on."""
    import jax

    c0, t0 = time.process_time(), time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - t0, time.process_time() - c0


def first_and_best(fn, repeat: int) -> dict:
    _, w1, c1 = timed(fn)
    walls, cpus = [], []
    for _ in range(repeat):
        _, w, c = timed(fn)
        walls.append(w)
        cpus.append(c)
    return {"first_wall_s": w1, "first_cpu_s": c1, "wall_s": min(walls), "cpu_s": min(cpus),
            "compile_wall_s_est": w1 - min(walls)}


class CompileLog:
    """Counts JAX traces and backend compilations (name, seconds) through jax.monitoring."""

    TRACE = "/jax/core/compile/jaxpr_trace_duration"
    COMPILE = "/jax/core/compile/backend_compile_duration"

    def __init__(self, tag=lambda: None):
        import jax

        self.events = []
        self.tag = tag
        jax.monitoring.register_event_duration_secs_listener(self._on)

    def _on(self, event, duration, **kw):
        if event in (self.TRACE, self.COMPILE):
            self.events.append((event == self.COMPILE, str(kw.get("fun_name", "?")), float(duration), self.tag()))

    def mark(self) -> int:
        return len(self.events)

    def since(self, mark: int) -> dict:
        ev = self.events[mark:]
        comp = [e for e in ev if e[0]]
        return {"compilations": len(comp), "compile_s": sum(e[2] for e in comp),
                "traces": sum(1 for e in ev if not e[0]), "trace_s": sum(e[2] for e in ev if not e[0])}


# ------------------------------------------------------------------------------------------
# 2. the bare pass and its variants
# ------------------------------------------------------------------------------------------


def radial_values_per_atom(C, Q, zi, zj):
    """Prototype: C[z_i] gathered per *atom* (a one-hot matmul over A atoms), then only the
    neighbour species (N_T values) contracted per pair: (A, K, N_T R) x (A, N_T R, N_f) instead of
    (A, K, N_T^2 R) x (N_T^2 R, N_f). Same result as :meth:`mlipress.models.layers.Dense.radial_values`.
    Needs the (A, K) layout of :func:`mlipress.models.mtp.evaluator.radial_values`' arguments
    (``zi`` is ``types_i`` broadcast over the neighbour axis)."""
    import jax
    import jax.numpy as jnp

    nt, _, nf, nb = C.shape
    zi0 = zi[..., 0]
    Ci = jax.nn.one_hot(zi0, nt, dtype=Q.dtype) @ C.reshape(nt, nt * nf * nb)  # (..., nt*nf*nb)
    Ci = jnp.swapaxes(Ci.reshape(*zi0.shape, nt, nf, nb), -1, -2).reshape(*zi0.shape, nt * nb, nf)
    wj = (jax.nn.one_hot(zj, nt, dtype=Q.dtype)[..., :, None] * Q[..., None, :]).reshape(*Q.shape[:-1], nt * nb)
    return jnp.einsum("...kx,...xf->...kf", wj, Ci)


def radial_values_all_pairs(C, Q, zi, zj):
    """Prototype: all N_T^2 radial functions per pair by one matmul Q (..., R) x (R, N_T^2 N_f),
    then the pair's own selected by a one-hot contraction over N_T^2."""
    import jax
    import jax.numpy as jnp

    nt, _, nf, nb = C.shape
    F = (Q @ jnp.transpose(C, (3, 0, 1, 2)).reshape(nb, nt * nt * nf)).reshape(*Q.shape[:-1], nt * nt, nf)
    pair = jax.nn.one_hot(zi * nt + zj, nt * nt, dtype=Q.dtype)
    return jnp.einsum("...p,...pf->...f", pair, F)


@contextlib.contextmanager
def patched_radial_values(fn):
    """Swap :func:`mlipress.models.mtp.evaluator.radial_values` (looked up at trace time; it
    receives the (A, K) pair layout and calls the radial layer's ``radial_values``) for ``fn``
    on dense multi-species radial parts, and clear the compiled-function caches so new
    objectives, features and E/F/S functions trace the replacement."""
    import mlipress.fit.linear as lin
    import mlipress.loss as loss_mod
    import mlipress.models.base as base
    import mlipress.models.mtp.evaluator as ev
    from mlipress.models.layers import Dense

    orig = ev.radial_values

    def dispatch(radial, Q, zi, zj):
        if not isinstance(radial, Dense) or radial.shape[0] == 1:
            return orig(radial, Q, zi, zj)
        return fn(radial.C, Q, zi, zj)

    def clear():
        loss_mod._compiled_chunk_fns.cache_clear()
        lin._compiled_features.cache_clear()
        base._jitted_efs.cache_clear()

    ev.radial_values = dispatch
    clear()
    try:
        yield
    finally:
        ev.radial_values = orig
        clear()


def pass_section(mtp, level: int, ds, data, params, repeat: int, experiments: bool, labels) -> dict:
    from jax.flatten_util import ravel_pytree

    from mlipress.data import Dataset
    from mlipress.fit.linear import linear_solve
    from mlipress.fit.trainer import rmse
    from mlipress.loss import Objective, prepare
    from mlipress.models.base import jitted_efs
    from mlipress.models.mtp.basis import untrained_mtp

    obj = Objective(mtp, data)
    out = {"loss_grad": first_and_best(lambda: obj.value_and_grad(params)[1], repeat)}
    efs = jitted_efs(mtp)
    out["efs"] = first_and_best(lambda: [efs(params, c.batch) for c in data.chunks], repeat)
    out["rmse_call"] = first_and_best(lambda: rmse(mtp, params, data), repeat)
    n = data.n_atoms
    out["loss_grad"]["us_per_atom"] = out["loss_grad"]["cpu_s"] / n * 1e6
    out["efs"]["us_per_atom"] = out["efs"]["cpu_s"] / n * 1e6
    if not experiments:
        return out

    f_ref, g_ref = obj.value_and_grad(params)
    g_ref = np.asarray(ravel_pytree(g_ref)[0])
    theta_ref = np.asarray(linear_solve(mtp, params, data)[0].linear)
    exp = {"linear_solve_original": first_and_best(lambda: linear_solve(mtp, params, data)[0].moment, repeat)}

    # (a) the same geometry with one species: isolates the cost of the 4-species contraction
    one = Dataset(tuple(dataclasses.replace(c, types=np.zeros_like(c.types)) for c in ds.configurations), ("X",))
    rb = mtp.radial_basis
    mtp1 = untrained_mtp(level, 1, rb.min_dist, rb.max_dist, rb.size)
    data1 = prepare(one, mtp1, max_atoms=max(c.batch.vectors.shape[0] for c in data.chunks) - 1)
    p1, _ = linear_solve(mtp1, mtp1.init(0), data1)
    obj1 = Objective(mtp1, data1)
    exp["one_species_same_geometry"] = first_and_best(lambda: obj1.value_and_grad(p1)[1], repeat)

    # (b) rewrites of the species-pair contraction (checked against the original)
    for name, fn in (("radial_per_atom_gather", radial_values_per_atom), ("radial_all_pairs_select", radial_values_all_pairs)):
        with patched_radial_values(fn):
            o2 = Objective(mtp, data)
            row = first_and_best(lambda: o2.value_and_grad(params)[1], repeat)
            f2, g2 = o2.value_and_grad(params)
            g2 = np.asarray(ravel_pytree(g2)[0])
            row["f_rel_diff"] = abs(f2 / f_ref - 1.0)
            row["grad_rel_diff"] = float(np.linalg.norm(g2 - g_ref) / np.linalg.norm(g_ref))
            e2 = jitted_efs(mtp)
            row["efs"] = first_and_best(lambda: [e2(params, c.batch) for c in data.chunks], repeat)
            row["linear_solve"] = first_and_best(lambda: linear_solve(mtp, params, data)[0].moment, repeat)
            theta = np.asarray(linear_solve(mtp, params, data)[0].linear)
            row["theta_rel_diff_vs_original"] = float(np.linalg.norm(theta - theta_ref) / np.linalg.norm(theta_ref))
            exp[name] = row

    # (c) chunks padded per group of configurations (each group its own neighbour padding)
    groups = defaultdict(list)
    for c, lab in zip(ds.configurations, labels):
        groups[kind_of(lab)].append(c)
    total = {"cpu_s": 0.0, "wall_s": 0.0, "first_cpu_s": 0.0, "shapes": {}}
    for kind, cs in sorted(groups.items()):
        dg = prepare(Dataset(tuple(cs), SPECIES), mtp)
        og = Objective(mtp, dg)
        row = first_and_best(lambda: og.value_and_grad(params)[1], repeat)
        total["cpu_s"] += row["cpu_s"]
        total["wall_s"] += row["wall_s"]
        total["first_cpu_s"] += row["first_cpu_s"]
        total["shapes"][kind] = sorted(map(list, dg.shapes))
    exp["padding_per_group"] = total
    out["experiments"] = exp
    return out


# ------------------------------------------------------------------------------------------
# 3. one variable-projection evaluation, its parts; the preconditioner; first BFGS steps
# ------------------------------------------------------------------------------------------


def projection_section(mtp, data, params, repeat: int) -> dict:
    import jax
    import jax.numpy as jnp

    from mlipress.fit.linear import _compiled_features, _weighted_rows, linear_solve
    from mlipress.fit.precondition import gauss_newton_diagonal
    from mlipress.fit.projection import ProjectedObjective
    from mlipress.loss import Objective
    from mlipress.models.base import StructureKey

    design = _compiled_features(StructureKey(mtp))  # the jitted mtp_features_fn linear_solve uses
    out = {"design_per_chunk": []}
    for ch in data.chunks:
        out["design_per_chunk"].append(first_and_best(lambda: design(params, ch.batch), repeat))
    designs = [jax.block_until_ready(design(params, ch.batch)) for ch in data.chunks]
    out["weighted_rows"] = first_and_best(lambda: [_weighted_rows(ch, d) for ch, d in zip(data.chunks, designs)], repeat)
    rows = [_weighted_rows(ch, d) for ch, d in zip(data.chunks, designs)]
    P = rows[0].shape[1] - 1
    out["rows_shape"] = [list(r.shape) for r in rows]

    def qr():
        R = np.zeros((0, P + 1))
        for r in rows:
            R = np.linalg.qr(np.vstack([R, r]), mode="r")[: P + 1]
        U, s, Vt = np.linalg.svd(R[:P, :P], full_matrices=False)
        return s

    out["qr_svd"] = first_and_best(qr, repeat)
    out["linear_solve"] = first_and_best(lambda: linear_solve(mtp, params, data)[0].moment, repeat)
    solved, _ = linear_solve(mtp, params, data)
    obj = Objective(mtp, data)
    out["pass_at_solution"] = first_and_best(lambda: obj.value_and_grad(solved)[1], repeat)

    # the reduced value_and_grad through ProjectedObjective; a slightly moved radial part each
    # call so that its 4-entry cache never answers
    proj = ProjectedObjective(obj)
    k = [0]

    def proj_vg():
        k[0] += 1
        p = params.replace(radial=jax.tree.map(lambda x: x * (1.0 + 1e-12 * k[0]), params.radial))
        return proj.value_and_grad(p)[1]

    out["projected_value_and_grad"] = first_and_best(proj_vg, repeat)
    out["preconditioner_projected"] = first_and_best(
        lambda: jnp.asarray(gauss_newton_diagonal(obj, params, 4, 0, projected=True)), 1)
    out["preconditioner_fixed_theta"] = first_and_best(
        lambda: jnp.asarray(gauss_newton_diagonal(obj, solved, 4, 0, projected=False)), 1)
    return out


def backtracking_first(fdf, f0, df0, alpha0=1.0, **kw):
    """Prototype for the first trials of a line search: while a trial does not even decrease f
    (a blown-up step, typical of the first preconditioned-gradient step after a BFGS reset),
    go back to the quadratic-interpolation minimiser, safeguarded to [1e-3, 0.5] x the trial;
    then the package's strong-Wolfe search from there (trials are cached, never repeated)."""
    ls = importlib.import_module("mlipress.optim.linesearch")
    a, cache = float(alpha0), {}

    def cached(x):
        if x not in cache:
            cache[x] = fdf(x)
        return cache[x]

    for _ in range(10):
        f, _, _ = cached(a)
        if np.isfinite(f) and f <= f0:
            break
        q = ls._quadratic_minimizer(0.0, f0, df0, a, f) if np.isfinite(f) else None
        a = min(max(q if q is not None else 0.1 * a, 1e-3 * a), 0.5 * a)
    return ls.strong_wolfe(cached, f0, df0, a, **kw)


def first_steps_section(mtp, data, n_steps: int = 4) -> dict:
    """Evaluations of the first BFGS steps from the trainer's start (exact linear solve of
    ``mtp.init(seed)``, reduced or fixed-theta preconditioner), with the package's line search
    and with :func:`backtracking_first` swapped in for it."""
    from mlipress.fit.linear import linear_solve
    from mlipress.fit.projection import optimisation_target
    from mlipress.fit.trainer import TrainSettings, preconditioner
    from mlipress.loss import Objective

    bm = importlib.import_module("mlipress.optim.bfgs")  # the package re-exports a function `bfgs`
    orig = bm.strong_wolfe
    out = {}
    try:
        for scheme, vp in (("vp", True), ("mlip", False)):
            s = TrainSettings(variable_projection=vp)
            obj = Objective(mtp, data)
            target, _ = optimisation_target(obj, vp)
            p0, _ = linear_solve(mtp, mtp.init(s.seed), data)  # the trainer's start at the default scaling grid
            for name, sw in (("strong_wolfe", orig), ("quadratic_backtracking_first", backtracking_first)):
                bm.strong_wolfe = sw
                opt = bm.bfgs(target.value_and_grad, target.value, precondition=preconditioner(obj, s))
                st = opt.init(p0)
                evals, values = [], []
                for _ in range(n_steps):
                    new = opt.step(st)
                    evals.append(int(new.n_evals - st.n_evals))
                    values.append(float(new.value))
                    st = new
                out[f"{scheme}/{name}"] = {"evals_per_step": evals, "f_after_step": values}
    finally:
        bm.strong_wolfe = orig
    return out


# ------------------------------------------------------------------------------------------
# 4. instrumented fits (run in a subprocess each: cold JIT caches, as in a CLI run)
# ------------------------------------------------------------------------------------------


class Profiler:
    """Nesting timer: exclusive wall/CPU per (bucket, context, part). ``bucket`` is the phase
    slice (setup, (phase, iteration), transition, final); ``context`` the innermost enclosing
    region that is a context (line search, reset, preconditioner, RMSE, ...)."""

    CONTEXTS = ("line search", "bfgs init", "bfgs reset", "preconditioner", "progress RMSE", "initial solve",
                "solve step")

    def __init__(self):
        self.stack = []
        self.bucket = "setup"
        self._bstart = None
        self.bucket_time = defaultdict(lambda: [0.0, 0.0])
        self.excl = defaultdict(lambda: [0.0, 0.0])
        self.calls = Counter()

    def start(self):
        self._bstart = (time.perf_counter(), time.process_time())

    def set_bucket(self, bucket):
        now = (time.perf_counter(), time.process_time())
        acc = self.bucket_time[self.bucket]
        acc[0] += now[0] - self._bstart[0]
        acc[1] += now[1] - self._bstart[1]
        self.bucket, self._bstart = bucket, now

    def context(self) -> str:
        for frame in reversed(self.stack):
            if frame[0] in self.CONTEXTS:
                return frame[0]
        return "(top level)"

    @contextlib.contextmanager
    def region(self, name):
        frame = [name, time.perf_counter(), time.process_time(), 0.0, 0.0]
        self.stack.append(frame)
        try:
            yield
        finally:
            w, c = time.perf_counter() - frame[1], time.process_time() - frame[2]
            ctx = self.context()
            self.stack.pop()
            key = (self.bucket, ctx, name)
            self.excl[key][0] += w - frame[3]
            self.excl[key][1] += c - frame[4]
            self.calls[key] += 1
            if self.stack:
                self.stack[-1][3] += w
                self.stack[-1][4] += c

    def wrap(self, name, fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            with self.region(name):
                return fn(*a, **k)

        return wrapper


def bucket_key(b) -> str:
    return b if isinstance(b, str) else f"{b[0]}:{b[1]}"


def run_fit(scheme: str, n_pre: int, n_main: int, ds, max_atoms: int, level: int) -> dict:
    """One instrumented train() call; returns the raw accounting.

    Wrapped (parts): ``Objective.value_and_grad`` (loss+grad pass), the jitted MTP features
    function that ``mlipress.fit.linear`` compiles (design matrix), ``_weighted_rows``, the
    rest of ``linear_solve`` (QR+SVD), ``ProjectedObjective`` host work, the E/F/S pass of the
    progress RMSE. Contexts: BFGS ``init``/``reset``/``step`` (line search),
    ``gauss_newton_diagonal`` (preconditioner), ``trainer.rmse`` (progress RMSE),
    ``trainer._initial_solve`` (the start's exact solve, again after pre-training) and
    ``trainer.exact_solve`` (periodic solve, MLIP's final solve)."""
    import jax

    bfgs_mod = importlib.import_module("mlipress.optim.bfgs")  # the package re-exports a function `bfgs`
    import mlipress.fit.init as init_mod
    import mlipress.fit.linear as lin_mod
    import mlipress.fit.precondition as pre_mod
    import mlipress.fit.projection as proj_mod
    import mlipress.fit.trainer as tr
    from mlipress.loss import LossWeights, Objective
    from mlipress.models.mtp.basis import untrained_mtp
    from mlipress.optim import Optimizer

    prof = Profiler()
    comp = CompileLog(tag=lambda: (bucket_key(prof.bucket), prof.context(), prof.stack[-1][0] if prof.stack else ""))
    steps, searches = [], []
    total_steps = n_pre + n_main
    state_flags = {"steps": 0, "initial_solves": 0, "rmse_after_last": 0}

    def blocking(fn):
        return lambda *a: jax.block_until_ready(fn(*a))

    # --- the leaves ---
    Objective.value_and_grad = prof.wrap("loss+grad pass", Objective.value_and_grad)
    P = proj_mod.ProjectedObjective
    P.value_and_grad = prof.wrap("projection host", P.value_and_grad)
    P._solve = prof.wrap("projection host", P._solve)
    orig_features = lin_mod._compiled_features
    lin_mod._compiled_features = functools.lru_cache(maxsize=8)(
        lambda key: prof.wrap("design matrix", blocking(orig_features(key))))
    lin_mod._weighted_rows = prof.wrap("weighted rows (host)", lin_mod._weighted_rows)
    ls = prof.wrap("QR+SVD (host)", lin_mod.linear_solve)
    for mod in (proj_mod, init_mod, tr):
        mod.linear_solve = ls
    orig_efs = tr.jitted_efs
    tr.jitted_efs = lambda model: prof.wrap("EFS pass", blocking(orig_efs(model)))
    pre_mod.gauss_newton_diagonal = prof.wrap("preconditioner", pre_mod.gauss_newton_diagonal)
    tr.prepare = prof.wrap("prepare", tr.prepare)

    # --- the contexts that also move the bucket ---
    rmse_w = prof.wrap("progress RMSE", tr.rmse)

    def rmse(*a, **k):  # after the last step: the last progress line, then the final record
        if state_flags["steps"] >= total_steps:
            state_flags["rmse_after_last"] += 1
            if state_flags["rmse_after_last"] >= 2:
                prof.set_bucket("final")
        return rmse_w(*a, **k)

    tr.rmse = rmse
    initial_w = prof.wrap("initial solve", tr._initial_solve)

    def initial_solve(*a, **k):  # at the start, and again when pre-training ends
        state_flags["initial_solves"] += 1
        if state_flags["initial_solves"] > 1:
            prof.set_bucket("transition")
        return initial_w(*a, **k)

    tr._initial_solve = initial_solve
    exact_w = prof.wrap("solve step", tr.exact_solve)

    def exact_solve(*a, **k):  # periodic solve; after the last step MLIP's final solve
        if state_flags["steps"] >= total_steps:
            prof.set_bucket("final")
        return exact_w(*a, **k)

    tr.exact_solve = exact_solve

    orig_sw = bfgs_mod.strong_wolfe

    def strong_wolfe(fdf, f0, df0, alpha0=1.0, *, c1=1e-4, **kw):
        trials = []

        def fdf2(a):
            f, d, pl = fdf(a)
            trials.append({"alpha": float(a), "f": float(f), "armijo": bool(np.isfinite(f) and f <= f0 + c1 * a * df0)})
            return f, d, pl

        res = orig_sw(fdf2, f0, df0, alpha0, c1=c1, **kw)
        searches.append({"step": state_flags["steps"] + 1, "trials": trials, "alpha": float(res.alpha),
                         "success": bool(res.success), "f0": float(f0), "df0": float(df0), "alpha0": float(alpha0),
                         # f >= 0 (least squares): a quadratic model along d cannot go below 0, so its
                         # minimiser is at most 2 f0 / |phi'(0)| from the start
                         "alpha_bound_f_nonneg": float(2.0 * f0 / abs(df0)) if df0 else None})
        return res

    bfgs_mod.strong_wolfe = strong_wolfe

    orig_bfgs = tr.bfgs

    def bfgs(value_and_grad, value=None, **kw):
        opt = orig_bfgs(value_and_grad, value, **kw)

        def step(state):
            k = state_flags["steps"] + 1
            phase = "pretrain" if k <= n_pre else "main"
            prof.set_bucket((phase, k))
            c0, t0 = time.process_time(), time.perf_counter()
            with prof.region("line search"):
                new = opt.step(state)
            state_flags["steps"] = k
            steps.append({"step": k, "phase": phase,
                          "n_evals": int(new.n_evals - state.n_evals),
                          "n_grad_evals": int(new.n_grad_evals - state.n_grad_evals),
                          "status": new.status, "alpha": float(new.alpha), "f": float(new.value),
                          "grad_norm": float(new.grad_norm), "step_wall_s": time.perf_counter() - t0,
                          "step_cpu_s": time.process_time() - c0})
            return new

        return Optimizer(prof.wrap("bfgs init", opt.init), step, prof.wrap("bfgs reset", opt.reset))

    tr.bfgs = bfgs

    mtp = untrained_mtp(level, len(SPECIES), 2.0, 5.0)
    settings = tr.TrainSettings(weights=LossWeights(), log_every=10, max_atoms=max_atoms,
                                variable_projection=(scheme == "vp"), pretrain_iters=n_pre,
                                max_iter=n_pre + n_main, seed=0)
    log = []

    class Tee:
        def write(self, s):
            log.append(s)
            sys.stderr.write(s)

        def flush(self):
            sys.stderr.flush()

    load0 = load_average()
    prof.start()
    c0, t0 = time.process_time(), time.perf_counter()
    result = tr.train(mtp, ds, settings, out=Tee())
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    prof.set_bucket("end")
    return {
        "scheme": scheme, "pretrain_iters": n_pre, "main_iters": n_main, "max_iter_setting": settings.max_iter,
        "train_wall_s": wall, "train_cpu_s": cpu, "load_average_1min": [load0, load_average()],
        "stop_reason": result.stop_reason, "final_f": result.history[-1].get("f") if result.history else None,
        "bucket_time": {bucket_key(b): v for b, v in prof.bucket_time.items()},
        "excl": [[bucket_key(b), c, n, w, cp, prof.calls[(b, c, n)]] for (b, c, n), (w, cp) in prof.excl.items()],
        "compile_events": [[int(is_c), name, d, *tag] for is_c, name, d, tag in comp.events],
        "steps": steps, "searches": searches, "progress_lines": "".join(log).splitlines(),
    }


def compiled_functions(events) -> dict:
    """{function name: [backend compilations, seconds, where (context / part) of the first]}"""
    out = {}
    for is_c, name, d, _bucket, ctx, leaf in events:
        if is_c:
            row = out.setdefault(name, [0, 0.0, f"{ctx} / {leaf}"])
            row[0] += 1
            row[1] += d
    return dict(sorted(out.items(), key=lambda kv: -kv[1][1]))


def summarise_fit(raw: dict) -> dict:
    """Per-phase accounting: per-iteration means for pretrain/main, totals for one-off slices."""
    def phase_of(bucket: str) -> str:
        return bucket.split(":", 1)[0]

    n_iter = Counter(phase_of(b) for b in raw["bucket_time"] if ":" in b)
    phases = {}
    for ph in ("setup", "pretrain", "transition", "main", "final"):
        buckets = [b for b in raw["bucket_time"] if phase_of(b) == ph]
        if not buckets:
            continue
        n = n_iter.get(ph, 1) if ph in ("pretrain", "main") else 1
        wall = sum(raw["bucket_time"][b][0] for b in buckets) / n
        cpu = sum(raw["bucket_time"][b][1] for b in buckets) / n
        by_ctx = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0, 0]))
        for b, ctx, name, w, c, calls in raw["excl"]:
            if phase_of(b) == ph:
                cell = by_ctx[ctx][name]
                cell[0] += w / n
                cell[1] += c / n
                cell[2] += calls / n
        parts = defaultdict(lambda: [0.0, 0.0])
        for ctx, names in by_ctx.items():
            for name, (w, c, _) in names.items():
                parts[name][0] += w
                parts[name][1] += c
        accounted = sum(v[0] for v in parts.values())
        accounted_cpu = sum(v[1] for v in parts.values())
        per_iter_cpu = sorted(raw["bucket_time"][b][1] for b in buckets)
        comp = [e for e in raw["compile_events"] if phase_of(e[3]) == ph]
        st = [s for s in raw["steps"] if s["phase"] == ph]
        step_phase = {x["step"]: x["phase"] for x in raw["steps"]}
        se = [s for s in raw["searches"] if step_phase.get(s["step"]) == ph]
        trials = sum(len(s["trials"]) for s in se)
        contexts = {ctx: [sum(v[0] for v in names.values()), sum(v[1] for v in names.values())]
                    for ctx, names in by_ctx.items()}
        phases[ph] = {
            "iterations": n if ph in ("pretrain", "main") else None,
            "wall_s": wall, "cpu_s": cpu,
            "contexts_wall_s": {k: v[0] for k, v in sorted(contexts.items(), key=lambda kv: -kv[1][0])},
            "contexts_cpu_s": {k: v[1] for k, v in sorted(contexts.items(), key=lambda kv: -kv[1][0])},
            "parts_wall_s": {k: v[0] for k, v in sorted(parts.items(), key=lambda kv: -kv[1][0])},
            "parts_cpu_s": {k: v[1] for k, v in sorted(parts.items(), key=lambda kv: -kv[1][0])},
            "unaccounted_wall_s": wall - accounted, "unaccounted_cpu_s": cpu - accounted_cpu,
            "median_iteration_cpu_s": float(np.median(per_iter_cpu)) if ph in ("pretrain", "main") else None,
            "by_context": {ctx: {name: {"wall_s": v[0], "cpu_s": v[1], "calls": v[2]} for name, v in names.items()}
                           for ctx, names in by_ctx.items()},
            "compilations": sum(1 for e in comp if e[0]) / n, "compile_s": sum(e[2] for e in comp if e[0]) / n,
            "traces": sum(1 for e in comp if not e[0]) / n, "trace_s": sum(e[2] for e in comp if not e[0]) / n,
            "compiled_functions": compiled_functions(comp),
            "evals_per_iter": float(np.mean([s["n_evals"] for s in st])) if st else None,
            "grad_evals_per_iter": float(np.mean([s["n_grad_evals"] for s in st])) if st else None,
            "evals_per_iter_list": [s["n_evals"] for s in st],
            "line_search_trials": trials, "trials_failing_armijo": sum(not t["armijo"] for s in se for t in s["trials"]),
            "directions_tried_per_iter": (len(se) / len(st)) if st else None,
            "status": dict(Counter(s["status"] for s in st)),
            "first_search": ({k: se[0][k] for k in ("alpha0", "alpha", "alpha_bound_f_nonneg", "f0", "df0")}
                             | {"trials": len(se[0]["trials"])}) if se else None,
        }
    return phases


# functions compiled more than once by design: the penalty's value and its value_and_grad
# are both named after `weighted` (mlipress.loss._compiled_penalty_fns)
EXPECTED_COMPILATIONS = {"jit(weighted)": 2}


def duplicate_compilations(raw: dict) -> dict:
    """Backend compilations of a function name beyond the expected ones (retraces of the same
    shapes, e.g. a weak-typed scalar that becomes strongly typed after BFGS's ravel/unravel;
    eager operations on new shapes count too)."""
    seen, dup = Counter(), defaultdict(lambda: [0, 0.0, []])
    for is_c, name, d, bucket, ctx, leaf in raw["compile_events"]:
        if not is_c:
            continue
        seen[name] += 1
        if seen[name] > EXPECTED_COMPILATIONS.get(name, 1):
            dup[name][0] += 1
            dup[name][1] += d
            dup[name][2].append(f"{bucket} / {ctx}")
    return {"seconds": sum(v[1] for v in dup.values()), "functions": {k: v for k, v in dup.items()}}


def fit_subprocess(spec: str, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fit.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", spec, "--worker-out", str(out),
               "--quota", args.quota, "--max-atoms", str(args.max_atoms), "--level", str(args.level)]
        for flag, value in (("--data", args.data), ("--package-root", args.package_root), ("--core", args.core)):
            if value is not None:
                cmd += [flag, str(value)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        raw = json.loads(out.read_text())
        raw["process_wall_s"] = time.perf_counter() - t0
        return raw


def package_info(package_root) -> dict:
    """Where mlipress was imported from and the repository commit (a snapshot's commit is
    given by a COMMIT file in its directory, as it has no .git); uncommitted changes to
    mlipress/ of the repository are listed when the installed package was measured."""
    import mlipress

    root = Path(mlipress.__file__).resolve().parent.parent
    info = {"mlipress": str(Path(mlipress.__file__).resolve().parent), "package_root": package_root}

    def git(*cmd) -> str:
        return subprocess.run(["git", *cmd], cwd=Path(__file__).parent, capture_output=True, text=True).stdout.strip()

    try:
        info["repository_head"] = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "mlipress")
        info["repository_mlipress_modified"] = bool(changed)
        if changed and not package_root:
            info["repository_mlipress_changes"] = git("diff", "--stat", "HEAD", "--", "mlipress").splitlines()
    except OSError:
        pass
    if (root / "COMMIT").is_file():
        info["snapshot_commit"] = (root / "COMMIT").read_text().strip()
    return info


def parse_run(spec: str):
    scheme, iters = spec.split(":")
    pre, main = iters.split("+")
    if scheme not in ("vp", "mlip"):
        raise SystemExit(f"unknown scheme {scheme!r} in {spec!r} (vp or mlip)")
    return scheme, int(pre), int(main)


def extrapolate(phases: dict, n_pre: int, n_main: int) -> dict:
    """Wall / CPU of a run with n_pre + n_main iterations from the measured slices."""
    def get(ph, key):
        return phases.get(ph, {}).get(key, 0.0) or 0.0

    out = {}
    for key in ("wall_s", "cpu_s"):
        once = get("setup", key) + get("final", key) + (get("transition", key) if n_pre else 0.0)
        out[key] = once + n_pre * get("pretrain", key) + n_main * get("main", key)
    return out


def reference_summary(path: str) -> dict:
    """The whole-fit times of an earlier result of this benchmark (another commit), for a
    then/now comparison."""
    old = json.loads(Path(path).read_text())
    fits = []
    for f in old.get("fits", []):
        raw = f.get("raw", {})
        fits.append({
            "run": f["run"], "train_cpu_s": raw.get("train_cpu_s"), "train_wall_s": raw.get("train_wall_s"),
            "iterations": {ph: row.get("iterations") for ph, row in f["phases"].items() if row.get("iterations")},
            "cpu_s_per_iteration": {ph: row["cpu_s"] for ph, row in f["phases"].items() if row.get("iterations")},
            "evals_per_iteration": {ph: row["evals_per_iter"] for ph, row in f["phases"].items() if row.get("iterations")},
            "compile_total_s": f.get("compile_total_s"),
            "duplicate_compile_s": f.get("duplicate_compilations", {}).get("seconds"),
        })
    return {"file": str(path), "command": old.get("command"), "package": old.get("package"),
            "load_average_1min_at_start": old.get("machine", {}).get("load_average_1min_at_start"), "fits": fits}


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------

PART_LABEL = {"line search": "BFGS host (step)", "progress RMSE": "RMSE host", "preconditioner": "precond. host",
              "bfgs init": "init host", "bfgs reset": "reset host"}


def print_phase_table(name: str, phases: dict) -> None:
    print(f"\n{name}\nseconds per iteration (pretrain, main) or once (setup, transition, final)")
    print(f"{'slice':<11} {'wall':>7} {'CPU':>7} {'evals':>6} {'compile':>8}  by context (CPU s) | by part (CPU s)")
    for ph, row in phases.items():
        ctx = ", ".join(f"{k} {v:.3f}" for k, v in row["contexts_cpu_s"].items() if v >= 0.005)
        parts = ", ".join(f"{PART_LABEL.get(k, k)} {v:.3f}" for k, v in row["parts_cpu_s"].items() if v >= 0.005)
        ev = f"{row['evals_per_iter']:.2f}" if row["evals_per_iter"] is not None else "-"
        print(f"{ph:<11} {row['wall_s']:>7.3f} {row['cpu_s']:>7.3f} {ev:>6} {row['compile_s']:>8.2f}  {ctx} | {parts}")
        if row["evals_per_iter_list"]:
            print(f"{'':<11} median iteration {row['median_iteration_cpu_s']:.3f} s CPU; "
                  f"evaluations per iteration {row['evals_per_iter_list']}, line-search trials failing "
                  f"Armijo {row['trials_failing_armijo']}/{row['line_search_trials']}, status {row['status']}")
    for ph, row in phases.items():
        big = [f"{k} x{v[0]} {v[1]:.2f} s ({v[2]})" for k, v in row["compiled_functions"].items() if v[1] >= 0.2]
        if big:
            n = row["iterations"] or 1
            print(f"  compiled in {ph} (total over {n} slice(s)): " + "; ".join(big))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--level", type=int, default=10)
    ap.add_argument("--runs", nargs="*", default=DEFAULT_RUNS,
                    help="instrumented fits, scheme:PRE+MAIN (scheme vp or mlip; pretrain_iters=PRE, "
                         f"max_iter=PRE+MAIN; default {' '.join(DEFAULT_RUNS)})")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quota", default=DEFAULT_QUOTA, help="configurations per group kind")
    ap.add_argument("--max-atoms", type=int, default=2048)
    ap.add_argument("--data", help="NbMoTaW folder (default: nbmotaw/ of the shared data, $MLIPRESS_SHARED_DATA)")
    ap.add_argument("--experiments", action="store_true",
                    help="pass variants (species, radial rewrites, padding) and first BFGS steps with a prototype "
                         "line search")
    ap.add_argument("--skip-fits", action="store_true")
    ap.add_argument("--core", type=int, default=None, help="pin to this core instead of the lowest")
    ap.add_argument("--output", default="fit_overhead.json", help="file name in benchmarks/results/")
    ap.add_argument("--package-root", help="import mlipress from this directory (e.g. a `git archive` snapshot "
                                           "of a commit) instead of the installed package")
    ap.add_argument("--reference", help="an earlier result of this benchmark (another commit) whose whole-fit "
                                        "times are copied into this one for comparison")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})

    folder = nbmotaw_dir(args.data)
    quota = parse_quota(args.quota)
    if args.package_root:
        sys.path.insert(0, str(Path(args.package_root).resolve()))

    import jax  # noqa: F401

    import mlipress  # noqa: F401  (float64)

    ds, labels, counts = training_set(folder, quota)
    if args.worker:
        scheme, pre, mn = parse_run(args.worker)
        raw = run_fit(scheme, pre, mn, ds, args.max_atoms, args.level)
        Path(args.worker_out).write_text(json.dumps(raw))
        return 0

    from mlipress.fit.linear import linear_solve
    from mlipress.loss import prepare
    from mlipress.models.mtp.basis import untrained_mtp

    result = {"benchmark": "per-iteration wall time of a real fit vs the bare loss+gradient pass (NbMoTaW)",
              "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]), "machine": machine(),
              "level": args.level, "user_report": USER_RUN, "user_command_now": USER_COMMAND_NOW,
              "package": package_info(args.package_root)}
    if args.reference:
        result["reference"] = reference_summary(args.reference)
    sizes = size_summary(ds, labels)
    result["training_set"] = {**sizes, "per_file": counts, "quota": quota}
    print(f"training set: {sizes['configurations']} configurations, {sizes['atoms']} atoms, atoms/config "
          f"min {sizes['min']} median {sizes['median']:g} max {sizes['max']}; histogram {sizes['histogram_atoms_per_config']}")

    mtp = untrained_mtp(args.level, len(SPECIES), 2.0, 5.0)
    t0 = time.perf_counter()
    data = prepare(ds, mtp, max_atoms=args.max_atoms)
    pad = padding_report(ds, data, labels)
    pad["prepare_s"] = time.perf_counter() - t0
    result["padding"] = pad
    print(f"chunks: {pad['n_chunks']}, shapes (C, A, K) {pad['shapes']}; neighbours/atom {pad['neighbours_per_atom']}; "
          f"padded/real: configs {pad['padded_over_real']['configs']:.2f}, atoms {pad['padded_over_real']['atoms']:.3f}, "
          f"neighbour slots {pad['padded_over_real']['neighbour_slots']:.2f}")

    # a realistic point: random orthonormal radial part, exact linear coefficients
    comp = CompileLog()
    mark = comp.mark()
    (params, _), w, c = timed(lambda: linear_solve(mtp, mtp.init(0), data))
    result["first_linear_solve"] = {"wall_s": w, "cpu_s": c, **comp.since(mark)}
    print(f"first linear solve (design-matrix JIT + solve): {w:.2f} s wall, {c:.2f} s CPU, "
          f"{result['first_linear_solve']['compilations']} compilations ({result['first_linear_solve']['compile_s']:.2f} s)")
    mark = comp.mark()
    result["pass"] = pass_section(mtp, args.level, ds, data, params, args.repeat, args.experiments, labels)
    lg = result["pass"]["loss_grad"]
    print(f"bare loss+grad pass: first call {lg['first_wall_s']:.2f} s (JIT), then {lg['wall_s']:.3f} s wall, "
          f"{lg['cpu_s']:.3f} s CPU = {lg['us_per_atom']:.0f} us/atom; EFS pass {result['pass']['efs']['cpu_s']:.3f} s; "
          f"rmse() {result['pass']['rmse_call']['cpu_s']:.3f} s CPU")
    for name, row in result["pass"].get("experiments", {}).items():
        extra = "".join(f", {k} {row[k]:.1e}" for k in ("f_rel_diff", "grad_rel_diff", "theta_rel_diff_vs_original") if k in row)
        sub = f", linear_solve {row['linear_solve']['cpu_s']:.3f} s, EFS {row['efs']['cpu_s']:.3f} s" if "linear_solve" in row else ""
        print(f"  {name}: pass {row['cpu_s']:.3f} s CPU (first {row['first_cpu_s']:.2f}){sub}{extra}")
    result["projection"] = projection_section(mtp, data, params, args.repeat)
    pr = result["projection"]
    d = sum(x["cpu_s"] for x in pr["design_per_chunk"])
    print(f"projected evaluation: {pr['projected_value_and_grad']['cpu_s']:.3f} s CPU = design {d:.3f} "
          f"(compile {sum(x['first_cpu_s'] - x['cpu_s'] for x in pr['design_per_chunk']):.2f}) + rows "
          f"{pr['weighted_rows']['cpu_s']:.4f} + QR/SVD {pr['qr_svd']['cpu_s']:.4f} (linear_solve "
          f"{pr['linear_solve']['cpu_s']:.3f}) + pass {pr['pass_at_solution']['cpu_s']:.3f}; preconditioner "
          f"{pr['preconditioner_projected']['first_cpu_s']:.2f} s (projected), "
          f"{pr['preconditioner_fixed_theta']['first_cpu_s']:.2f} s (fixed theta)")
    result["compile_in_micro_benchmarks"] = comp.since(mark)
    if args.experiments:
        result["first_steps"] = first_steps_section(mtp, data)
        for k, v in result["first_steps"].items():
            print(f"first BFGS steps, {k}: evaluations {v['evals_per_step']}, f "
                  + " ".join(f"{x:.4g}" for x in v["f_after_step"]))

    fits = []
    if not args.skip_fits:
        for spec in args.runs:
            scheme, pre, mn = parse_run(spec)
            print(f"\nfit {spec} (subprocess, cold JIT caches) ...", flush=True)
            raw = fit_subprocess(spec, args)
            phases = summarise_fit(raw)
            # with pre-training measured: the user's 75 + 30; without: the user's command now
            # (30 iterations in all, no pre-training under variable projection)
            target = USER_RUN if pre else USER_COMMAND_NOW
            ext_iters = (target["pretrain"], target["main"])
            ext = {"iterations": list(ext_iters), **extrapolate(phases, *ext_iters)}
            dup = duplicate_compilations(raw)
            fits.append({"run": spec, "scheme": scheme, "phases": phases, "extrapolated": ext,
                         "duplicate_compilations": dup, "compile_total_s": sum(e[2] for e in raw["compile_events"] if e[0]),
                         "raw": {k: v for k, v in raw.items() if k not in ("excl",)}, "excl": raw["excl"]})
            print_phase_table(f"{spec} ({'variable projection' if scheme == 'vp' else 'MLIP scheme'}), train() "
                              f"{raw['train_wall_s']:.1f} s wall / {raw['train_cpu_s']:.1f} s CPU, load average "
                              f"{raw['load_average_1min'][0]:.2f} -> {raw['load_average_1min'][1]:.2f}", phases)
            print(f"compilations: {fits[-1]['compile_total_s']:.1f} s in total, of which {dup['seconds']:.1f} s "
                  f"recompiling functions already compiled: "
                  + ", ".join(f"{k} x{v[0]} {v[1]:.2f} s" for k, v in dup["functions"].items()))
            for ph, row in phases.items():
                if row.get("first_search"):
                    fs = row["first_search"]
                    print(f"first line search of {ph}: {fs['trials']} trials from alpha0 {fs['alpha0']:g} to accepted "
                          f"{fs['alpha']:.3g} (2 f0/|phi'(0)| = {fs['alpha_bound_f_nonneg']:.3g})")
            print(f"extrapolated to {ext_iters[0]} + {ext_iters[1]} iterations: {ext['wall_s']:.0f} s wall, "
                  f"{ext['cpu_s']:.0f} s CPU (user's 75 + 30: {USER_RUN['wall_s']:.0f} s)")
    result["fits"] = fits
    out = write_result(Path(args.output).name, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
