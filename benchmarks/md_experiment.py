"""Finite-temperature and polymorph checks of base vs compressed NbMoTaW MTPs (paper Table IV / Fig. 11 spirit).

Usage::

    python benchmarks/md_experiment.py \\
        --potential base=benchmarks/results/fit_nbmotaw-16.mtp \\
        --potential mf50=benchmarks/results/nbmotaw_mf50.mtp \\
        [--species Nb,Mo,Ta,W] [--composition Nb=1,Mo=1,Ta=1,W=1] [--repeat 4] \\
        [--temperatures 300,700,1100,1500] [--steps 3000] [--equilibrate 1000] [--timestep 2] \\
        [--seeds 2] [--parts polymorph,md] [--out md_experiment] [--quick]

Part 1 (``md``): for every potential, temperature and seed, NPT MD at ``--pressure`` (0 GPa) with
the LangevinBAOAB thermostat/barostat of :func:`mlipress.simulate.run_md` on a random bcc solid
solution (``--repeat`` conventional bcc cells; 4 -> 128 atoms; the arrangement and velocities
depend on the seed only, so every potential sees the same starting states). The first
``--equilibrate`` steps are discarded; density (g/cm^3) and the bcc lattice parameter
a = (2 V / N)^(1/3) are block-averaged (Flyvbjerg-Petersen) per run. Seeds are combined as the
mean, with sigma across seeds and the error of the mean
``err = max(sigma / sqrt(n), sqrt(sum sem_i^2) / n)``. A weighted linear fit of a(T) gives the
linear thermal expansion coefficient.

Part 2 (``polymorph``): for each element, bcc / fcc / hcp (ideal c/a) one-/two-atom cells
relaxed with cell (fmax 0.01 eV/A, smax 0.01 GPa): E(fcc)-E(bcc), E(hcp)-E(bcc) in meV/atom and
the bcc lattice parameter vs experiment; for the random alloy, bcc vs fcc supercells of equal
size (one arrangement per seed; mean +- sem). The cell anisotropy after relaxation (largest /
smallest singular value of cell0^-1 cell, minus 1) is recorded so that a cell that slid to
another lattice (e.g. fcc -> bct along the Bain path) is visible.

Writes ``benchmarks/results/<out>.json`` and ``<out>.md`` after every MD run and relaxation, so
a partial run is usable. ``--quick``: tiny sizes for a smoke test (default ``--out
md_experiment_quick``). One thread.
"""

from __future__ import annotations

import os

from _common import ONE_THREAD  # noqa: E402

os.environ["XLA_FLAGS"] = ONE_THREAD
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import hashlib  # noqa: E402
import math  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from ase.build import bulk  # noqa: E402

from _common import RESULTS, machine, write_result  # noqa: E402  (puts the repo on sys.path)

from mlipress.io.mtp import read_mtp  # noqa: E402
from mlipress.simulate import SkinMTPCalculator, block_average, relax, run_md  # noqa: E402

#: Experimental room-temperature bcc lattice parameters (A), as quoted in the issue.
A_EXP = {"Nb": 3.30, "Mo": 3.15, "Ta": 3.30, "W": 3.16}
TWO_SIGMA = 2.0


# ----------------------------------------------------------------------------- inputs


def parse_potentials(items: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--potential wants NAME=PATH, got {item!r}")
        name, path = item.split("=", 1)
        if not name or name in out:
            raise SystemExit(f"--potential: empty or repeated name {name!r}")
        if not Path(path).is_file():
            raise SystemExit(f"--potential {name}: no file {path}")
        out[name] = Path(path)
    return out


def parse_composition(text: str | None, species: list[str]) -> dict[str, float]:
    if not text:
        return {s: 1.0 / len(species) for s in species}
    comp = {}
    for part in text.split(","):
        el, _, x = part.partition("=")
        el = el.strip()
        if el not in species:
            raise SystemExit(f"--composition: {el!r} is not in --species {species}")
        comp[el] = float(x) if x else 1.0
    total = sum(comp.values())
    return {el: x / total for el, x in comp.items() if x > 0}


def repeat3(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in text.replace("x", ",").split(",") if p.strip()]
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or min(parts) < 1:
        raise SystemExit(f"--repeat wants N or NX,NY,NZ, got {text!r}")
    return tuple(parts)


def counts_for(comp: dict[str, float], n: int) -> dict[str, int]:
    """Integer counts summing to ``n`` (largest remainders)."""
    raw = {el: x * n for el, x in comp.items()}
    counts = {el: int(math.floor(v)) for el, v in raw.items()}
    for el in sorted(raw, key=lambda e: raw[e] - counts[e], reverse=True)[: n - sum(counts.values())]:
        counts[el] += 1
    return counts


def random_alloy(lattice: str, a: float, repeat, comp: dict[str, float], seed: int):
    """Random solid solution on ``lattice`` (bcc or fcc, conventional cubic cell) repeated."""
    atoms = bulk("Mo", lattice, a=a, cubic=True).repeat(repeat)
    counts = counts_for(comp, len(atoms))
    symbols = [el for el, c in counts.items() for _ in range(c)]
    np.random.default_rng(seed).shuffle(symbols)
    atoms.set_chemical_symbols(symbols)
    return atoms


def vegard_a(comp: dict[str, float]) -> float:
    if all(el in A_EXP for el in comp):
        return sum(x * A_EXP[el] for el, x in comp.items())
    return 3.2


def potential_info(name: str, path: Path) -> dict:
    info = {"name": name, "path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    side = path.with_name(path.name + ".factors.npz")
    info["factored_sidecar"] = side.is_file()
    if side.is_file():
        try:
            from mlipress.compress import read_compressed

            _, _, header = read_compressed(path)
            info["compressed_header"] = {k: header[k] for k in header if k not in ("mtp_sha256",)}
        except Exception as exc:  # the dense .mtp is what runs; the sidecar is informative only
            info["compressed_header_error"] = str(exc)
    mtp = read_mtp(path)
    info["species_count"] = int(mtp.species_count)
    info["cutoff"] = float(mtp.cutoff)
    return info


# ----------------------------------------------------------------------------- statistics


def combine(runs: list[dict], key: str) -> dict | None:
    ok = [r for r in runs if r.get("ok")]
    if not ok:
        return None
    means = np.array([r[key]["mean"] for r in ok])
    sems = np.array([r[key]["sem"] for r in ok])
    n = len(ok)
    sigma = float(means.std(ddof=1)) if n > 1 else float("nan")
    sem_seeds = sigma / math.sqrt(n) if n > 1 else float("nan")
    sem_blocks = float(np.sqrt(np.nansum(sems**2)) / n)
    err = float(np.nanmax([sem_seeds, sem_blocks])) if n > 1 else sem_blocks
    return {"mean": float(means.mean()), "sigma_seeds": sigma, "sem_seeds": sem_seeds, "sem_blocks": sem_blocks,
            "err": err, "n_seeds": n}


def linear_fit(x, y, err) -> dict | None:
    """Weighted least squares y = c0 + c1 x; returns slope, intercept and their 1-sigma errors."""
    x, y, err = map(np.asarray, (x, y, err))
    good = np.isfinite(y) & np.isfinite(err) & (err > 0)
    if good.sum() < 2:
        return None
    x, y, w = x[good], y[good], 1.0 / err[good] ** 2
    A = np.stack([np.ones_like(x), x], axis=1)
    cov = np.linalg.inv(A.T @ (A * w[:, None]))
    c = cov @ (A.T @ (w * y))
    return {"intercept": float(c[0]), "slope": float(c[1]), "intercept_err": float(math.sqrt(cov[0, 0])),
            "slope_err": float(math.sqrt(cov[1, 1])), "n_points": int(good.sum())}


def compare(a: dict | None, b: dict | None) -> dict | None:
    if not a or not b:
        return None
    diff = b["mean"] - a["mean"]
    err = math.sqrt(a["err"] ** 2 + b["err"] ** 2)
    return {"diff": diff, "err": err, "z": abs(diff) / err if err > 0 else float("inf")}


# ----------------------------------------------------------------------------- part 1: NPT MD


def md_point(mtp, species, comp, args, T: float, seed_index: int, a_start: float) -> dict:
    seed = args.seed + seed_index
    atoms = random_alloy("bcc", a_start, args.repeat, comp, seed)
    calc = SkinMTPCalculator(mtp, species=species, skin=args.skin)
    total = args.equilibrate + args.steps
    t0 = time.perf_counter()
    res = run_md(atoms, calc, ensemble="npt", temperature=T, pressure=args.pressure, steps=total,
                 timestep_fs=args.timestep, interval=args.interval, seed=seed * 100003 + int(T), progress=args.progress)
    wall = time.perf_counter() - t0
    log = res.log
    keep = log["step"] >= args.equilibrate
    n = len(atoms)
    vol = log["volume_A3"][keep]
    a = (2.0 * vol / n) ** (1.0 / 3.0)
    out = {"seed": seed, "natoms": n, "a_start": a_start, "steps_total": total, "samples": int(keep.sum()),
           "wall_s": wall, "steps_per_second": res.steps_per_second, "neighbour_rebuilds": calc.rebuilds}
    finite = np.all(np.isfinite(log["epot_eV"])) and np.all(np.isfinite(log["volume_A3"]))
    if not finite or keep.sum() < 4:
        out.update(ok=False, error="non-finite energies/volumes or too few samples")
        return out
    for key, series in (("density_g_cm3", log["density_g_cm3"][keep]), ("a_A", a),
                        ("temperature_K", log["temperature_K"][keep]), ("pressure_GPa", log["pressure_GPa"][keep]),
                        ("epot_meV_atom", 1000.0 * log["epot_eV"][keep] / n)):
        ba = block_average(series)
        out[key] = {"mean": ba.mean, "sem": ba.sem, "block": ba.block_size, "n_blocks": ba.n_blocks,
                    "plateau": ba.plateau}
    # Drift check: the first and second halves of the production run should agree.
    half = len(a) // 2
    out["a_half_difference_A"] = float(a[half:].mean() - a[:half].mean())
    out["ok"] = True
    return out


# ----------------------------------------------------------------------------- part 2: polymorphs


def anisotropy(cell0, cell) -> float:
    s = np.linalg.svd(np.linalg.solve(np.asarray(cell0), np.asarray(cell)), compute_uv=False)
    return float(s.max() / s.min() - 1.0)


def relax_fixed_shape(atoms, calc, args):
    """Positions + volume only (cell shape kept): FIRE on FrechetCellFilter(hydrostatic_strain=True);
    converged when max |F| <= fmax and |mean stress| <= smax. Keeps a random fcc supercell fcc
    (a full cell relaxation may slide it along the Bain path to bct/bcc)."""
    from ase import units
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    atoms.calc = calc

    def res():
        f = float(np.sqrt((atoms.get_forces() ** 2).sum(axis=1)).max())
        p = float(abs(atoms.get_stress(voigt=True)[:3].mean()) / units.GPa)
        return f, p

    opt = FIRE(FrechetCellFilter(atoms, hydrostatic_strain=True), logfile=None)
    f, p = res()
    converged, steps = f <= args.fmax and p <= args.smax, 0
    if not converged:
        for _ in opt.irun(fmax=0.0, steps=args.relax_steps):
            steps = opt.nsteps
            f, p = res()
            if f <= args.fmax and p <= args.smax:
                converged = True
                break
    return converged, steps, float(atoms.get_potential_energy()), f, p


def relax_one(mtp, species, atoms, args, fixed_shape: bool = False) -> dict:
    calc = SkinMTPCalculator(mtp, species=species, skin=args.skin)
    cell0 = np.array(atoms.cell)
    t0 = time.perf_counter()
    if fixed_shape:
        converged, steps, energy, fmax, smax = relax_fixed_shape(atoms, calc, args)
    else:
        r = relax(atoms, calc, fmax=args.fmax, smax=args.smax, max_steps=args.relax_steps, cell=True)
        converged, steps, energy, fmax, smax = r.converged, r.steps, r.energy, r.fmax, r.smax
    n = len(atoms)
    lengths = atoms.cell.lengths()
    return {"natoms": n, "energy_eV_atom": energy / n, "converged": converged, "steps": steps,
            "fmax": fmax, "smax_GPa": smax, "volume_A3_atom": float(atoms.get_volume() / n),
            "cell_anisotropy": anisotropy(cell0, atoms.cell), "c_over_a": float(lengths[2] / lengths[0]),
            "cell": np.array(atoms.cell).round(5).tolist(), "fixed_shape": fixed_shape,
            "wall_s": time.perf_counter() - t0}


def element_structures(el: str):
    a_bcc = A_EXP.get(el, 3.2)
    a_fcc = a_bcc * 2.0 ** (1.0 / 3.0)  # same volume per atom as bcc
    a_hcp = a_fcc / math.sqrt(2.0)
    return {"bcc": bulk(el, "bcc", a=a_bcc), "fcc": bulk(el, "fcc", a=a_fcc),
            "hcp": bulk(el, "hcp", a=a_hcp, c=a_hcp * math.sqrt(8.0 / 3.0))}


def polymorph_entry(results: dict) -> dict:
    """Energy differences (meV/atom) and bcc lattice parameter from relaxed structures."""
    out = {}
    bcc = results.get("bcc")
    if bcc:
        out["a_bcc_A"] = (2.0 * bcc["volume_A3_atom"]) ** (1.0 / 3.0)
        for s in ("fcc", "hcp"):
            if results.get(s):
                out[f"dE_{s}_bcc_meV"] = 1000.0 * (results[s]["energy_eV_atom"] - bcc["energy_eV_atom"])
    if results.get("fcc_fixed_shape") and bcc:
        out["dE_fcc_bcc_fixed_shape_meV"] = 1000.0 * (results["fcc_fixed_shape"]["energy_eV_atom"] - bcc["energy_eV_atom"])
    if results.get("hcp"):
        out["hcp_c_over_a"] = results["hcp"]["c_over_a"]
    out["all_converged"] = all(r["converged"] for r in results.values() if r)
    # hcp may change c/a legitimately: the anisotropy flag looks at the cubic lattices only.
    out["max_cell_anisotropy"] = max((r["cell_anisotropy"] for k, r in results.items() if r and k != "hcp"), default=0.0)
    return out


def alloy_polymorphs(mtp, species, comp, args, save) -> dict:
    a0 = vegard_a(comp)
    per_seed = []
    for k in range(args.seeds):
        seed = args.seed + k
        bcc = random_alloy("bcc", a0, args.alloy_repeat_bcc, comp, seed)
        fcc = random_alloy("fcc", a0 * 2.0 ** (1.0 / 3.0), args.alloy_repeat_fcc, comp, seed)
        runs = {"bcc": relax_one(mtp, species, bcc, args), "fcc": relax_one(mtp, species, fcc.copy(), args),
                "fcc_fixed_shape": relax_one(mtp, species, fcc, args, fixed_shape=True)}
        entry = polymorph_entry(runs)
        entry.update(seed=seed, relaxations=runs)
        per_seed.append(entry)
        save()
    summary = {}
    for key in ("dE_fcc_bcc_meV", "dE_fcc_bcc_fixed_shape_meV", "a_bcc_A"):
        vals = np.array([e[key] for e in per_seed if key in e])
        if len(vals):
            summary[key] = {"mean": float(vals.mean()),
                            "err": float(vals.std(ddof=1) / math.sqrt(len(vals))) if len(vals) > 1 else float("nan"),
                            "n": int(len(vals))}
    summary["all_converged"] = all(e["all_converged"] for e in per_seed)
    summary["max_cell_anisotropy"] = max(e["max_cell_anisotropy"] for e in per_seed)
    return {"per_seed": per_seed, "summary": summary}


# ----------------------------------------------------------------------------- report


def fmt(v, digits=4):
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def pm(d, digits=4):
    if not d:
        return "n/a"
    return f"{fmt(d['mean'], digits)} ± {fmt(d['err'], digits)}"


def summarise(result: dict) -> None:
    """Fill result["md"]["summary"] (combined seeds, fits, comparisons with the first potential)."""
    md = result.get("md", {})
    names = list(result["potentials"])
    temps = result["settings"]["temperatures"]
    summary = {}
    for name in names:
        per_t = {}
        for T in temps:
            runs = md.get("runs", {}).get(name, {}).get(str(T), [])
            per_t[str(T)] = {"density_g_cm3": combine(runs, "density_g_cm3"), "a_A": combine(runs, "a_A"),
                             "temperature_K": combine(runs, "temperature_K"),
                             "pressure_GPa": combine(runs, "pressure_GPa"), "n_runs": len(runs),
                             "n_failed": sum(1 for r in runs if not r.get("ok"))}
        xs = [T for T in temps if per_t[str(T)]["a_A"]]
        fit = linear_fit(xs, [per_t[str(T)]["a_A"]["mean"] for T in xs], [per_t[str(T)]["a_A"]["err"] for T in xs])
        if fit:
            ref = fit["intercept"] + fit["slope"] * 300.0
            fit["alpha_per_K"] = fit["slope"] / ref
            fit["alpha_err_per_K"] = fit["slope_err"] / ref
        summary[name] = {"per_T": per_t, "a_linear_fit": fit}
    md["summary"] = summary
    comparisons = {}
    if len(names) > 1:
        base = names[0]
        for other in names[1:]:
            comp = {}
            for key in ("density_g_cm3", "a_A"):
                comp[key] = {str(T): compare(summary[base]["per_T"][str(T)][key], summary[other]["per_T"][str(T)][key])
                             for T in temps}
            fa, fb = summary[base]["a_linear_fit"], summary[other]["a_linear_fit"]
            if fa and fb:
                d = fb["alpha_per_K"] - fa["alpha_per_K"]
                e = math.hypot(fa["alpha_err_per_K"], fb["alpha_err_per_K"])
                comp["alpha_per_K"] = {"diff": d, "err": e, "z": abs(d) / e if e > 0 else float("inf")}
            comparisons[other] = comp
    md["comparisons"] = comparisons
    result["md"] = md


def what_this_shows(result: dict) -> list[str]:
    names = list(result["potentials"])
    lines = []
    md = result.get("md", {})
    temps = result["settings"]["temperatures"]
    for name in names:
        fails = sum(md.get("summary", {}).get(name, {}).get("per_T", {}).get(str(T), {}).get("n_failed", 0) for T in temps)
        done = sum(md.get("summary", {}).get(name, {}).get("per_T", {}).get(str(T), {}).get("n_runs", 0) for T in temps)
        if done:
            lines.append(f"- `{name}`: {done} NPT runs done, {fails} failed (non-finite or too short).")
    if len(names) < 2:
        lines.append("- Only one potential: no base-vs-compressed comparison.")
    base = names[0]
    for other, comp in md.get("comparisons", {}).items():
        for key, label, unit, digits in (("density_g_cm3", "density", "g/cm³", 4), ("a_A", "lattice parameter", "Å", 4)):
            pts = {T: c for T, c in comp.get(key, {}).items() if c}
            if not pts:
                continue
            within1 = [T for T, c in pts.items() if c["z"] <= 1.0]
            within2 = [T for T, c in pts.items() if c["z"] <= TWO_SIGMA]
            worst_T, worst = max(pts.items(), key=lambda kv: kv[1]["z"])
            rel = max(abs(c["diff"]) / md["summary"][base]["per_T"][T][key]["mean"] for T, c in pts.items())
            lines.append(
                f"- {label}, `{other}` − `{base}`: within 1σ (combined error) at {len(within1)}/{len(pts)} temperatures, "
                f"within 2σ at {len(within2)}/{len(pts)}; largest deviation {fmt(worst['diff'], digits)} ± "
                f"{fmt(worst['err'], digits)} {unit} at {worst_T} K ({worst['z']:.1f}σ); largest relative difference "
                f"{100 * rel:.3f}%.")
        if "alpha_per_K" in comp:
            c = comp["alpha_per_K"]
            lines.append(f"- linear thermal expansion, `{other}` − `{base}`: {c['diff'] * 1e6:.2f} ± {c['err'] * 1e6:.2f} "
                         f"×10⁻⁶/K ({c['z']:.1f}σ).")
    poly = result.get("polymorph", {})
    if poly:
        for name in names:
            p = poly.get(name, {})
            elems = p.get("elements", {})
            bcc_ground = [el for el, e in elems.items()
                          if all(e.get(f"dE_{s}_bcc_meV", 1.0) > 0 for s in ("fcc", "hcp"))]
            dev = [abs(e["a_bcc_A"] - A_EXP[el]) / A_EXP[el] for el, e in elems.items() if "a_bcc_A" in e and el in A_EXP]
            alloy = p.get("alloy", {}).get("summary", {}).get("dE_fcc_bcc_fixed_shape_meV")
            if elems:
                lines.append(
                    f"- `{name}`: bcc is the lowest of bcc/fcc/hcp for {len(bcc_ground)}/{len(elems)} elements "
                    f"({', '.join(bcc_ground) or 'none'}; DFT: all)"
                    + (f"; alloy fcc−bcc (fixed shape) {pm(alloy, 1)} meV/atom" if alloy else "")
                    + (f"; mean |a_bcc − a_exp| / a_exp = {100 * np.mean(dev):.2f}%." if dev else "."))
        if len(names) > 1:
            for other in names[1:]:
                diffs = []
                for el, e in poly.get(base, {}).get("elements", {}).items():
                    o = poly.get(other, {}).get("elements", {}).get(el, {})
                    for s in ("fcc", "hcp"):
                        k = f"dE_{s}_bcc_meV"
                        if k in e and k in o:
                            diffs.append((abs(o[k] - e[k]), el, s, o[k] - e[k], e[k]))
                if diffs:
                    d = max(diffs)
                    rel = max(x[0] / abs(x[4]) for x in diffs if x[4])
                    lines.append(f"- polymorph energies, `{other}` − `{base}`: largest change {d[3]:+.1f} meV/atom "
                                 f"({d[1]} {d[2]}−bcc), at most {100 * rel:.1f}% of the base value; these are "
                                 f"deterministic 0 K numbers (no statistical error bar).")
                ab = poly.get(base, {}).get("alloy", {}).get("summary", {}).get("dE_fcc_bcc_fixed_shape_meV")
                ao = poly.get(other, {}).get("alloy", {}).get("summary", {}).get("dE_fcc_bcc_fixed_shape_meV")
                c = compare(ab, ao) if ab and ao and math.isfinite(ab["err"]) and math.isfinite(ao["err"]) else None
                if c:
                    lines.append(f"- alloy fcc−bcc (fixed shape), `{other}` − `{base}`: {c['diff']:+.1f} ± {c['err']:.1f} meV/atom "
                                 f"({c['z']:.1f}σ over random arrangements).")
            flagged = [(name, el) for name in names for el, e in poly.get(name, {}).get("elements", {}).items()
                       if not e.get("all_converged", True)]
            if flagged:
                lines.append(f"- relaxations not converged: {flagged}.")
    return lines


def markdown(result: dict) -> str:
    s = result["settings"]
    names = list(result["potentials"])
    temps = s["temperatures"]
    L = [f"# NbMoTaW: density and lattice parameter vs temperature, polymorph ranking ({', '.join(names)})", "",
         f"Generated by `benchmarks/md_experiment.py` ({result['status']}, updated {result['updated']}).", "",
         f"Command: `{result['command']}`", "",
         f"Machine: {result['machine']['cpu']}, {result['machine']['threads']} thread, "
         f"load {result['machine']['load_average_1min_at_start']} at start.", "", "Potentials:", ""]
    for name, info in result["potentials"].items():
        extra = ""
        if info.get("compressed_header"):
            h = info["compressed_header"]
            extra = f" (factored: {h.get('kind')}, ranks {h.get('ranks', h.get('rank'))})"
        L.append(f"- `{name}`: `{info['path']}` sha256 {info['sha256'][:12]}{extra}")
    L += ["", f"NPT MD: random bcc solid solution {s['composition']}, {s['natoms_md']} atoms "
          f"({'x'.join(map(str, s['repeat']))} conventional cells), {s['pressure_GPa']} GPa, LangevinBAOAB "
          f"(T_tau 100 fs, P_tau 1000 fs), {s['timestep_fs']} fs, {s['equilibrate']} equilibration + {s['steps']} "
          f"production steps, sampled every {s['interval']}, {s['seeds']} seeds (arrangement + velocities) per point. "
          "Errors: 1σ of the mean over seeds, max(σ_seeds/√n, √Σsem²/n) with block-averaged per-run sem.", ""]
    md = result.get("md", {}).get("summary", {})
    if md:
        for key, title, digits in (("density_g_cm3", "Density (g/cm³)", 4), ("a_A", "Lattice parameter a = (2V/N)^(1/3) (Å)", 4)):
            L += [f"### {title}", "", "| potential | " + " | ".join(f"{T} K" for T in temps) + " |",
                  "|---|" + "---|" * len(temps)]
            for name in names:
                cells = [pm(md[name]["per_T"][str(T)][key], digits) for T in temps]
                L.append(f"| {name} | " + " | ".join(cells) + " |")
            L.append("")
        L += ["### Thermostat / barostat check and thermal expansion", "",
              "| potential | " + " | ".join(f"⟨T⟩, ⟨P⟩ at {T} K" for T in temps) + " | α = (1/a₃₀₀) da/dT (10⁻⁶/K) |",
              "|---|" + "---|" * (len(temps) + 1)]
        for name in names:
            cells = []
            for T in temps:
                d = md[name]["per_T"][str(T)]
                cells.append(f"{fmt(d['temperature_K']['mean'], 0) if d['temperature_K'] else 'n/a'} K, "
                             f"{pm(d['pressure_GPa'], 3)} GPa")
            fit = md[name]["a_linear_fit"]
            alpha = f"{fit['alpha_per_K'] * 1e6:.2f} ± {fit['alpha_err_per_K'] * 1e6:.2f}" if fit else "n/a"
            L.append(f"| {name} | " + " | ".join(cells) + f" | {alpha} |")
        L.append("")
    poly = result.get("polymorph", {})
    if poly:
        L += ["### Polymorph energies (meV/atom, relaxed with cell) and bcc lattice parameter (Å)", "",
              "DFT: bcc is the ground state of Nb, Mo, Ta and W. Alloy: random equiatomic bcc vs fcc supercells, "
              "mean ± sem over arrangements. Anisotropy: max/min singular value of cell₀⁻¹·cell − 1 "
              "(≫0 means the cell left its starting lattice; hcp excluded, its relaxed c/a is in the JSON). "
              "Alloy fcc−bcc: fcc relaxed at fixed cell shape (volume + positions), since a full cell relaxation "
              "of a random fcc supercell can slide to bct/bcc (Bain path); the full-cell number is given in brackets.", "",
              "| system | potential | fcc − bcc | hcp − bcc | a_bcc | a_exp | converged | max anisotropy |",
              "|---|---|---|---|---|---|---|---|"]
        systems = list(result["settings"]["elements"]) + ["alloy"]
        for el in systems:
            for name in names:
                p = poly.get(name, {})
                if el == "alloy":
                    e = p.get("alloy", {}).get("summary")
                    if not e:
                        continue
                    L.append(f"| {result['settings']['composition_label']} | {name} | {pm(e.get('dE_fcc_bcc_fixed_shape_meV'), 1)} "
                             f"(full cell: {pm(e.get('dE_fcc_bcc_meV'), 1)}) | — | "
                             f"{pm(e.get('a_bcc_A'), 4)} | {fmt(result['settings']['a_vegard'], 3)} (Vegard) | "
                             f"{e['all_converged']} | {e['max_cell_anisotropy']:.3f} |")
                else:
                    e = p.get("elements", {}).get(el)
                    if not e:
                        continue
                    L.append(f"| {el} | {name} | {fmt(e.get('dE_fcc_bcc_meV'), 1)} | {fmt(e.get('dE_hcp_bcc_meV'), 1)} | "
                             f"{fmt(e.get('a_bcc_A'), 4)} | {fmt(A_EXP.get(el), 2)} | {e['all_converged']} | "
                             f"{e['max_cell_anisotropy']:.3f} |")
        L.append("")
    L += ["### What this shows (computed from the numbers above)", ""] + what_this_shows(result) + [""]
    return "\n".join(L)


# ----------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--potential", action="append", required=True, help="NAME=PATH (repeat; the first is the reference)")
    p.add_argument("--species", default="Nb,Mo,Ta,W", help="element of each potential type, in type order")
    p.add_argument("--composition", default=None, help="EL=x,... (default: equiatomic over --species)")
    p.add_argument("--repeat", default=None, help="MD supercell in conventional bcc cells (default 4 -> 128 atoms)")
    p.add_argument("--temperatures", default=None, help="K, comma-separated (default 300,700,1100,1500)")
    p.add_argument("--pressure", type=float, default=0.0, help="GPa")
    p.add_argument("--steps", type=int, default=None, help="production steps (default 3000)")
    p.add_argument("--equilibrate", type=int, default=None, help="discarded steps (default 1000)")
    p.add_argument("--timestep", type=float, default=2.0, help="fs")
    p.add_argument("--interval", type=int, default=10, help="sampling interval in steps")
    p.add_argument("--seeds", type=int, default=None, help="independent runs per point (default 2)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--skin", type=float, default=0.5)
    p.add_argument("--parts", default="polymorph,md", help="which parts, in order: polymorph,md")
    p.add_argument("--fmax", type=float, default=0.01)
    p.add_argument("--smax", type=float, default=0.01)
    p.add_argument("--relax-steps", type=int, default=None, help="max optimiser steps per relaxation (default 2000)")
    p.add_argument("--alloy-repeat", default=None, help="alloy bcc supercell (conventional cells; default 4 -> 128 atoms; "
                   "fcc uses the same atom count)")
    p.add_argument("--out", default=None, help="result name under benchmarks/results/ (default md_experiment)")
    p.add_argument("--progress", action="store_true", help="print MD progress lines")
    p.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test")
    args = p.parse_args()

    q = args.quick
    args.repeat = repeat3(args.repeat or ("2" if q else "4"))
    args.temperatures = [float(t) for t in (args.temperatures or ("300,1500" if q else "300,700,1100,1500")).split(",")]
    args.temperatures = [int(t) if t.is_integer() else t for t in args.temperatures]
    args.steps = args.steps if args.steps is not None else (200 if q else 3000)
    args.equilibrate = args.equilibrate if args.equilibrate is not None else (100 if q else 1000)
    args.seeds = args.seeds if args.seeds is not None else 2
    args.relax_steps = args.relax_steps if args.relax_steps is not None else (500 if q else 2000)
    ar = repeat3(args.alloy_repeat or ("2" if q else "4"))
    args.alloy_repeat_bcc = ar
    # fcc has 4 atoms per conventional cell, bcc 2: halve the first repeat that is even.
    fr = list(ar)
    for i in range(3):
        if fr[i] % 2 == 0:
            fr[i] //= 2
            break
    else:
        raise SystemExit("--alloy-repeat needs one even entry (fcc supercell with the bcc atom count)")
    args.alloy_repeat_fcc = tuple(fr)
    out_name = args.out or ("md_experiment_quick" if q else "md_experiment")
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    if any(x not in ("polymorph", "md") for x in parts):
        raise SystemExit("--parts: polymorph and/or md")

    species = [s for s in args.species.split(",") if s]
    comp = parse_composition(args.composition, species)
    pots = parse_potentials(args.potential)
    mtps = {name: read_mtp(path) for name, path in pots.items()}
    for name, mtp in mtps.items():
        if mtp.species_count != len(species):
            raise SystemExit(f"{name}: {mtp.species_count} species in the potential, --species has {len(species)}")

    natoms_md = 2 * int(np.prod(args.repeat))
    result = {
        "benchmark": "md_experiment",
        "status": "running",
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "updated": None,
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "machine": machine(threads=1),
        "settings": {
            "quick": q, "species": species, "elements": [el for el in species], "composition": comp,
            "composition_label": "".join(el if abs(x - 1 / len(comp)) < 1e-9 else f"{el}{x:.2f}" for el, x in comp.items()),
            "repeat": list(args.repeat), "natoms_md": natoms_md, "temperatures": args.temperatures,
            "pressure_GPa": args.pressure, "steps": args.steps, "equilibrate": args.equilibrate,
            "timestep_fs": args.timestep, "interval": args.interval, "seeds": args.seeds, "first_seed": args.seed,
            "skin": args.skin, "npt": "LangevinBAOAB, hydrostatic, T_tau 100 fs, P_tau 1000 fs",
            "relax": {"fmax_eV_A": args.fmax, "smax_GPa": args.smax, "max_steps": args.relax_steps,
                      "optimizer": "FIRE + FrechetCellFilter"},
            "alloy_repeat_bcc": list(args.alloy_repeat_bcc), "alloy_repeat_fcc": list(args.alloy_repeat_fcc),
            "a_vegard": vegard_a(comp), "a_exp": A_EXP, "parts": parts,
        },
        "potentials": {name: potential_info(name, path) for name, path in pots.items()},
    }
    t_start = time.perf_counter()

    def save(status="running"):
        result["status"] = status
        result["updated"] = datetime.datetime.now().isoformat(timespec="seconds")
        result["elapsed_s"] = time.perf_counter() - t_start
        if "md" in result:
            summarise(result)
        write_result(out_name + ".json", result)
        md_path = RESULTS / (out_name + ".md")
        tmp = md_path.with_name(md_path.name + ".tmp")
        tmp.write_text(markdown(result))
        tmp.replace(md_path)

    for part in parts:
        if part == "polymorph":
            result["polymorph"] = {}
            for name, mtp in mtps.items():
                entry = {"elements": {}}
                result["polymorph"][name] = entry
                for el in species:
                    runs = {}
                    for lat, atoms in element_structures(el).items():
                        runs[lat] = relax_one(mtp, species, atoms, args)
                    e = polymorph_entry(runs)
                    e["relaxations"] = runs
                    entry["elements"][el] = e
                    print(f"[{name}] {el}: fcc-bcc {e.get('dE_fcc_bcc_meV', float('nan')):.1f}, "
                          f"hcp-bcc {e.get('dE_hcp_bcc_meV', float('nan')):.1f} meV/atom, a_bcc {e.get('a_bcc_A', float('nan')):.4f} A",
                          flush=True)
                    save()
                if len(comp) > 1:
                    entry["alloy"] = alloy_polymorphs(mtp, species, comp, args, save)
                    s = entry["alloy"]["summary"]
                    print(f"[{name}] alloy: fcc-bcc {pm(s.get('dE_fcc_bcc_fixed_shape_meV'), 1)} (full cell {pm(s.get('dE_fcc_bcc_meV'), 1)}) meV/atom, a_bcc {pm(s.get('a_bcc_A'))}",
                          flush=True)
                    save()
        else:
            result["md"] = {"runs": {name: {} for name in mtps}}
            for T in args.temperatures:
                for k in range(args.seeds):
                    for name, mtp in mtps.items():
                        # Start from the potential's relaxed alloy lattice parameter when known.
                        a0 = result.get("polymorph", {}).get(name, {}).get("alloy", {}).get("summary", {}).get("a_bcc_A")
                        a_start = a0["mean"] if a0 else vegard_a(comp)
                        try:
                            run = md_point(mtps[name], species, comp, args, T, k, a_start)
                        except Exception as exc:  # an unstable potential must not kill the other runs
                            run = {"seed": args.seed + k, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
                        result["md"]["runs"][name].setdefault(str(T), []).append(run)
                        if run.get("ok"):
                            print(f"[{name}] {T} K seed {run['seed']}: rho {run['density_g_cm3']['mean']:.4f} ± "
                                  f"{run['density_g_cm3']['sem']:.4f} g/cm3, a {run['a_A']['mean']:.4f} A, "
                                  f"<T> {run['temperature_K']['mean']:.0f} K, {run['steps_per_second']:.1f} steps/s, "
                                  f"{run['wall_s']:.0f} s", flush=True)
                        else:
                            print(f"[{name}] {T} K seed {args.seed + k}: FAILED {run.get('error')}", flush=True)
                        save()
    save("complete")
    print(f"wrote {RESULTS / (out_name + '.json')} and .md in {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
