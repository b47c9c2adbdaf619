"""Learning on the fly: fit, run MD with grading, select, label, add, refit -- until an MD
round has no extrapolative configuration.

:func:`learn` (``mlipress learn settings.toml``) runs the loop of MLIP's active learning
with a user labeller (an ASE calculator: DFT in practice, EMT in the examples and tests):

1. fit the potential on the training set (the first time from an untrained potential of
   ``level``; later from the previous coefficients, a warm start) -- the dense MTP with
   :func:`mlipress.fit.train`, a compressed one (``radial = "mf:2"``, ``"tt:..."``) with
   :func:`mlipress.compress.fit_compressed`;
2. build the active set of the training set (:func:`mlipress.active.build_active_set`);
3. run MD from every starting structure at every temperature with the grade on
   (:class:`~mlipress.active.otf.ExtrapolationMonitor`): configurations above
   ``grade_threshold`` are kept, a run stops above ``grade_break``;
4. none kept in any run: converged. Otherwise :func:`mlipress.active.select` picks among
   them those that enlarge the active set (at most ``max_select``), the labeller labels
   them, they join the training set, and the loop goes back to 1.

Everything lives in ``workdir``: ``train.cfg`` (the growing training set), ``pot.mtp`` (with
``pot.mtp.factors.npz`` for a compressed potential), ``log.jsonl`` (one record per
iteration: training-set size, grades, selected, MD steps, test errors) and ``state.json``
(the iteration and what of it is done), all written atomically; an interrupted run resumes
where it stopped (a fit interrupted midway resumes from its last checkpoint,
``fit<iteration>.ckpt.npz``).
"""

from __future__ import annotations

import importlib
import io
import json
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

from mlipress.active.grade import GradeSettings, build_active_set, select
from mlipress.active.otf import ExtrapolationMonitor
from mlipress.data import Configuration, Dataset
from mlipress.io import from_atoms, read_dataset
from mlipress.io.atomic import atomic_write
from mlipress.io.cfg import read_cfg, write_cfg

__all__ = ["LearnSettings", "LearnResult", "learn", "load_settings", "resolve_calculator"]

#: optimiser iterations between checkpoints of a fit (resume inside an interrupted fit)
FIT_CHECKPOINT_EVERY = 10


@dataclass(frozen=True)
class LearnSettings:
    """Settings of :func:`learn` (the TOML file's keys; paths relative to the file).

    Potential: ``level``, ``cutoff``, ``min_dist`` (A), ``radial`` (``"dense"`` or a
    compression spec such as ``"mf:2"``). Fit: ``fit_iters`` (optimiser iterations per fit),
    ``seed``. MD: ``temperatures`` (K), ``md_steps``, ``timestep_fs``, ``ensemble``
    (``"nvt"`` or ``"npt"``). Grades: ``grade_mode`` (``"cfg"``/``"nbh"``), ``grade_wrt``
    (``"all"``/``"linear"``), ``grade_threshold``, ``grade_break``. Selection:
    ``max_select`` per iteration (0: no limit). ``max_iterations`` bounds the loop.
    """

    species: tuple[str, ...]
    level: int = 8
    cutoff: float = 5.0
    min_dist: float = 1.5
    radial: str = "dense"
    fit_iters: int = 200
    seed: int = 0
    temperatures: tuple[float, ...] = (300.0,)
    md_steps: int = 200
    timestep_fs: float = 2.0
    ensemble: str = "nvt"
    grade_mode: str = "cfg"
    grade_wrt: str = "all"
    grade_threshold: float = 2.0
    grade_break: float = 10.0
    max_select: int = 0
    max_iterations: int = 20

    def __post_init__(self):
        object.__setattr__(self, "species", tuple(self.species))
        object.__setattr__(self, "temperatures", tuple(float(t) for t in self.temperatures))
        if not self.species:
            raise ValueError("species must name at least one element")
        if self.grade_break < self.grade_threshold:
            raise ValueError(f"grade_break {self.grade_break} is below grade_threshold {self.grade_threshold}")
        if self.ensemble not in ("nvt", "npt"):
            raise ValueError(f"ensemble must be nvt or npt, got {self.ensemble!r}")
        GradeSettings(self.grade_mode, self.grade_wrt)

    @property
    def grade_settings(self) -> GradeSettings:
        return GradeSettings(self.grade_mode, self.grade_wrt)


@dataclass(frozen=True, eq=False)
class LearnResult:
    """``converged``: an MD round without extrapolation; ``mtp``, ``params``: the last
    potential; ``train``: the final training set; ``log``: the iteration records."""

    converged: bool
    mtp: object
    params: object
    train: Dataset
    log: list = field(default_factory=list)


def resolve_calculator(spec: str) -> Callable:
    """``"package.module:function"`` -> the callable (called with no arguments for a calculator)."""
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"calculator must be 'module:function', got {spec!r}")
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"calculator {spec!r}: {exc}") from None
    if not callable(obj):
        raise ValueError(f"calculator {spec!r} is not callable")
    return obj


def load_settings(path) -> dict:
    """A learning TOML file -> keyword arguments of :func:`learn`.

    Top level: ``workdir``, ``train`` (labelled initial set), ``structures`` (MD starts, any
    ASE format, all frames), ``calculator`` (``"module:function"``), optional ``test``
    (labelled test set for the log). ``[learn]``: the :class:`LearnSettings` fields.
    """
    import tomllib

    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: {exc}") from None
    base = path.parent
    missing = [k for k in ("workdir", "train", "structures", "calculator") if k not in doc]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)}")
    known = {f.name for f in fields(LearnSettings)}
    section = doc.get("learn", {})
    unknown = sorted(set(section) - known)
    if unknown:
        raise ValueError(f"{path}: [learn] has unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    settings = LearnSettings(**section)
    species = settings.species
    import ase.io

    return dict(
        workdir=base / doc["workdir"],
        train=read_dataset(base / doc["train"], species=species),
        structures=ase.io.read(base / doc["structures"], index=":"),
        calculator=resolve_calculator(doc["calculator"]),
        settings=settings,
        test=read_dataset(base / doc["test"], species=species) if "test" in doc else None,
    )


# -- the loop -----------------------------------------------------------------------------------


def _read_state(workdir: Path) -> dict | None:
    path = workdir / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


def _write_state(workdir: Path, state: dict) -> None:
    atomic_write(workdir / "state.json", json.dumps(state, indent=1))


def _append_log(workdir: Path, record: dict) -> None:
    path = workdir / "log.jsonl"
    old = path.read_text() if path.exists() else ""
    atomic_write(path, old + json.dumps(record) + "\n")


def _fit_checkpoint(workdir: Path, iteration: int) -> Path:
    return workdir / f"fit{iteration}.ckpt.npz"


def _fit(mtp, params, train: Dataset, s: LearnSettings, iteration: int, workdir: Path):
    """Fit (warm start from ``params`` unless None) -> (mtp, params). The optimiser state is
    checkpointed every ``FIT_CHECKPOINT_EVERY`` iterations to ``fit<iteration>.ckpt.npz``, so
    a fit interrupted midway resumes (bit-identically) instead of starting again; the
    checkpoint is removed once the potential is written."""
    from mlipress.fit.trainer import TrainSettings

    settings = TrainSettings(max_iter=s.fit_iters, seed=s.seed + iteration, log_every=0,
                             checkpoint=str(_fit_checkpoint(workdir, iteration)),
                             checkpoint_every=FIT_CHECKPOINT_EVERY, resume=True)
    start = mtp if params is None else mtp.with_params(params)
    quiet = io.StringIO()
    if s.radial == "dense":
        from mlipress.fit.trainer import train as fit_dense

        res = fit_dense(start, train, settings, out=quiet)
    else:
        from mlipress.compress.fit import fit_compressed

        res = fit_compressed(start, train, s.radial, settings, out=quiet)
    return res.mtp, res.params


def _write_potential(workdir: Path, mtp, params, s: LearnSettings) -> None:
    if s.radial == "dense":
        mtp.with_params(params).write(workdir / "pot.mtp")
    else:
        from mlipress.compress.files import write_compressed

        write_compressed(workdir / "pot.mtp", mtp, params, s.radial)


def _read_potential(workdir: Path, s: LearnSettings):
    from mlipress.active.state import read_potential

    return read_potential(workdir / "pot.mtp")


def _errors(mtp, params, test: Dataset | None) -> dict:
    if test is None or not len(test):
        return {}
    from mlipress.metrics import error_report, summary_row
    from mlipress.predict import predict

    predicted, _ = predict(mtp, test.configurations, params=params)
    row = summary_row(error_report(test.configurations, predicted))
    return {"test_" + k: v for k, v in row.items() if k in ("energy_rmse_meV_per_atom", "force_rmse_eV_per_A_component")}


def _explore(mtp, params, active, structures, s: LearnSettings, iteration: int):
    """MD from every structure at every temperature: (extrapolative atoms, records)."""
    from mlipress.simulate.md import MDSettings, SkinMTPCalculator, run_md

    found, runs = [], []
    calc = SkinMTPCalculator(mtp, species=s.species, params=params, grade=True, active_set=active,
                             grade_settings=s.grade_settings)
    for k, (atoms0, T) in enumerate((a, T) for T in s.temperatures for a in structures):
        atoms = atoms0.copy()
        monitor = ExtrapolationMonitor(s.grade_threshold, s.grade_break, species=s.species)
        md = MDSettings(ensemble=s.ensemble, temperature=T, steps=s.md_steps, timestep_fs=s.timestep_fs,
                        interval=max(1, s.md_steps), seed=s.seed + 1000 * iteration + k)
        res = run_md(atoms, calc, progress=False, settings=md, observers=(monitor,))
        found.extend(at for _, _, at in monitor.saved)
        runs.append({"temperature_K": T, "structure": k % len(structures), "steps": res.steps,
                     "max_grade": monitor.max_grade, "extrapolative": len(monitor.saved),
                     "stopped": bool(res.stopped)})
    return found, runs


def _label(atoms_list, calculator: Callable, species) -> list[Configuration]:
    out = []
    for atoms in atoms_list:
        atoms = atoms.copy()
        atoms.calc = calculator()
        out.append(from_atoms(atoms, species))
    return out


def learn(workdir, train, structures, calculator: Callable, settings: LearnSettings, test: Dataset | None = None,
          out=None) -> LearnResult:
    """Run (or resume) the learning loop in ``workdir`` (module docstring).

    ``train``: the labelled initial :class:`Dataset` (ignored when resuming: the workdir's
    ``train.cfg`` is the state); ``structures``: ASE Atoms to start MD from; ``calculator``:
    a callable returning a fresh ASE calculator (the labeller); ``test``: optional labelled
    data whose errors are logged at every iteration. Progress lines go to ``out``.
    """
    from mlipress.models.mtp.basis import untrained_mtp

    s = settings
    out = sys.stdout if out is None else out
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    structures = list(structures)
    if not structures:
        raise ValueError("learn needs at least one starting structure")
    state = _read_state(workdir)
    settings_doc = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(s).items()}
    if state is None:
        train = Dataset(tuple(train), s.species)
        write_cfg(train, workdir / "train.cfg")
        state = {"iteration": 0, "fitted": False, "converged": False, "train_size": len(train),
                 "settings": settings_doc}
        _write_state(workdir, state)
    elif state["settings"] != settings_doc:
        raise ValueError(f"{workdir}/state.json was written with other settings; use a new workdir")
    else:
        print(f"resuming {workdir} at iteration {state['iteration']}", file=out)
    train = Dataset(read_cfg(workdir / "train.cfg").configurations, s.species)
    if len(train) != state["train_size"]:  # interrupted between writing train.cfg and the state
        state = {**state, "iteration": state["iteration"] + 1, "fitted": False, "train_size": len(train)}
    template = untrained_mtp(s.level, len(s.species), s.min_dist, s.cutoff)
    mtp, params = (_read_potential(workdir, s) if (workdir / "pot.mtp").exists() else (template, None))
    log = [json.loads(line) for line in (workdir / "log.jsonl").read_text().splitlines()] \
        if (workdir / "log.jsonl").exists() else []
    if not state["converged"]:  # records of an iteration that is run again
        log = [r for r in log if r["iteration"] < state["iteration"]]
        atomic_write(workdir / "log.jsonl", "".join(json.dumps(r) + "\n" for r in log))

    while not state["converged"] and state["iteration"] < s.max_iterations:
        it = state["iteration"]
        t0, c0 = time.perf_counter(), time.process_time()
        if not state["fitted"]:
            mtp, params = _fit(mtp, params, train, s, it, workdir)
            _write_potential(workdir, mtp, params, s)
            state = {**state, "fitted": True}
            _write_state(workdir, state)
            _fit_checkpoint(workdir, it).unlink(missing_ok=True)
        t_fit, c_fit = time.perf_counter() - t0, time.process_time() - c0
        active = build_active_set(mtp, params, train.configurations, s.grade_settings)
        found, runs = _explore(mtp, params, active, structures, s, it)
        record = {"iteration": it, "train_size": len(train), "fit_s": round(t_fit, 3), "fit_cpu_s": round(c_fit, 3),
                  "active_placeholders": active.placeholders(), "extrapolative": len(found),
                  "max_grade": max((r["max_grade"] for r in runs), default=0.0), "md": runs,
                  **_errors(mtp, params, test)}
        if not found:
            record["selected"] = 0
            state = {**state, "converged": True}
        else:
            cands = [from_atoms(a, s.species) for a in found]
            chosen, _, _ = select(mtp, params, active, cands, s.grade_settings, threshold=s.grade_threshold,
                                  max_count=s.max_select or None)
            labelled = _label([found[k] for k in chosen], calculator, s.species)
            train = Dataset(train.configurations + tuple(labelled), s.species)
            write_cfg(train, workdir / "train.cfg")
            record["selected"] = len(chosen)
            state = {**state, "iteration": it + 1, "fitted": False, "train_size": len(train)}
        record["wall_s"] = round(time.perf_counter() - t0, 3)
        record["cpu_s"] = round(time.process_time() - c0, 3)
        _append_log(workdir, record)
        _write_state(workdir, state)
        log.append(record)
        print(f"iteration {it}: {record['train_size']} training configurations, max grade {record['max_grade']:.3g}, "
              f"{record['extrapolative']} extrapolative, {record['selected']} selected ({record['wall_s']:.1f} s)",
              file=out, flush=True)
    if state["converged"]:
        print(f"converged: no extrapolative configuration in an MD round; {len(train)} training configurations",
              file=out)
    return LearnResult(state["converged"], mtp, params, train, log)
