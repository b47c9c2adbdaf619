"""Speed and accuracy of the CP-decomposed CG tensor product (Lin et al., "Tensor Decomposition
Networks") against the exact fused CG product, dense and sparse, and e3nn-jax's.

Usage::

    python benchmarks/tensor_product.py [--lmax 1 2 3 4 5 6] [--pairs 100000] [--quick]

One thread, one core. For each ``L``: the fused CG tensor of all paths ``(l1, l2) -> l3`` with
degrees ``<= L`` (``(L+1)^2`` entries per feature) applied to ``--pairs`` random feature pairs,
in jit-compiled chunks of ``--chunk`` pairs (``lax.map``): dense (``2 n^3`` flops per pair),
sparse over the nonzero entries (``3 nnz``; gather + scatter-add), over the nonzero degree
blocks (``blocks``: small dense matrix products, e3nn's way), CP at ranks ``k (L+1)^2`` for ``k`` in ``--time-ranks``
(``2 R (3 n) + R``), and e3nn-jax's ``tensor_product`` of the same irreps (all paths, outputs of
degree ``<= L`` of both parities, unweighted) if it imports. Times: process CPU time, best of
``--repeat`` after the compiling call, the same run for all. Scaling exponents: least-squares
slope of log time (and log flops) against log(L + 1) over ``L >= 2``; the paper's O(L^6) dense,
O(L^4) CP at ``R ~ L^2``.

Accuracy: for ranks ``k (L+1)^2`` (``--accuracy-ranks``, capped at the exact rank) and the exact
rank, the CP factors (ALS, seed 0, cached), their relative Frobenius error, the equivariance
bound ``2 min_t ||(T - T_R)_(t)||_2`` (spectral norm of an unfolding; also ``2 ||T - T_R||_F``) and the measured equivariance error
``max ||D f(x, y) - f(D x, D y)|| / (||x|| ||y||)`` over ``--rotations`` random rotations and
256 random pairs. Writes ``benchmarks/results/tensor_product.json`` and ``.md``.
"""

from __future__ import annotations

from _common import pin_one_core  # noqa: E402

pin_one_core()

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from _common import RESULTS, machine, write_result  # noqa: E402  (puts the repo on sys.path)

import mlipress  # noqa: E402,F401  (float64)
from mlipress.equivariant import (  # noqa: E402
    block_sparse_coupling,
    cg_paths,
    clebsch_gordan,
    cp_coupling,
    cp_error,
    dense_coupling,
    equivariance_bound,
    equivariance_error,
    exact_rank,
    fit_cp,
    fused_cg_tensor,
    sparse_coupling,
)


def best_cpu_time(fn, repeat):
    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeat):
        t = time.process_time()
        jax.block_until_ready(fn())
        times.append(time.process_time() - t)
    return min(times)


def chunked(product, chunk):
    """``x, y (pairs, n)`` -> ``(pairs, n_out)`` through ``product`` on chunks of ``chunk``."""

    @jax.jit
    def run(x, y):
        xs = x.reshape(-1, chunk, x.shape[-1])
        ys = y.reshape(-1, chunk, y.shape[-1])
        return jax.lax.map(lambda xy: product(*xy), (xs, ys)).reshape(x.shape[0], -1)

    return run


def e3nn_product(lmax):
    """e3nn-jax's unweighted tensor product on the same layout, or None if it does not import."""
    try:
        import e3nn_jax as e3nn
    except ImportError:
        return None
    irreps = e3nn.Irreps("+".join(f"{l}{'e' if l % 2 == 0 else 'o'}" for l in range(lmax + 1)))
    keep = [f"{l}{p}" for l in range(lmax + 1) for p in "eo"]

    def product(x, y):
        out = e3nn.tensor_product(e3nn.IrrepsArray(irreps, x), e3nn.IrrepsArray(irreps, y), filter_ir_out=keep)
        return out.array

    return product


def slope(lmaxes, values):
    keep = [(l, v) for l, v in zip(lmaxes, values) if l >= 2 and v and v > 0]
    if len(keep) < 2:
        return None
    logs = np.log([[l + 1, v] for l, v in keep])
    return float(np.polyfit(logs[:, 0], logs[:, 1], 1)[0])


def timings(args):
    rows = []
    for lmax in args.lmax:
        n = (lmax + 1) ** 2
        T = fused_cg_tensor(lmax)
        rng = np.random.default_rng(lmax)
        x, y = jnp.asarray(rng.normal(size=(args.pairs, n))), jnp.asarray(rng.normal(size=(args.pairs, n)))
        dense, sparse, blocks = dense_coupling(T), sparse_coupling(T), block_sparse_coupling(T)
        reference = dense(x[:64], y[:64])
        row = {"lmax": lmax, "n": n, "paths": len(cg_paths(lmax)), "nnz": int(np.count_nonzero(T)), "methods": {}}
        methods = {"dense": dense, "sparse": sparse, "blocks": blocks}
        for k in args.time_ranks:
            methods[f"cp:{k}n"] = cp_coupling(lmax, k * n)
        e3nn = e3nn_product(lmax)
        if e3nn is not None:
            methods["e3nn-jax"] = e3nn
        for name, product in methods.items():
            run = chunked(product, args.chunk)
            seconds = best_cpu_time(lambda: run(x, y), args.repeat)
            entry = {"seconds": seconds, "ns_per_pair": 1e9 * seconds / args.pairs}
            if hasattr(product, "flops_per_pair"):
                entry["flops_per_pair"] = product.flops_per_pair
                entry["gflops"] = product.flops_per_pair * args.pairs / seconds / 1e9
            if name != "e3nn-jax":
                entry["max_abs_difference_to_dense"] = float(jnp.max(jnp.abs(product(x[:64], y[:64]) - reference)))
            if hasattr(product, "rank"):
                entry["rank"] = product.rank
            row["methods"][name] = entry
            print(f"L={lmax} {name:>9}: {entry['ns_per_pair']:10.1f} ns/pair"
                  + (f"  {entry['flops_per_pair']:8d} flop/pair" if "flops_per_pair" in entry else ""), flush=True)
        rows.append(row)
    names = list(rows[0]["methods"])
    lmaxes = [r["lmax"] for r in rows]
    exponents = {
        name: {
            "time": slope(lmaxes, [r["methods"][name]["seconds"] for r in rows]),
            "flops": slope(lmaxes, [r["methods"][name].get("flops_per_pair") for r in rows]),
        }
        for name in names
    }
    return rows, exponents


def accuracy(args):
    rows = []
    for lmax in args.lmax:
        n = (lmax + 1) ** 2
        T = fused_cg_tensor(lmax)
        full = exact_rank(T)
        for rank in sorted({min(k * n, full) for k in args.accuracy_ranks} | {full}):
            t = time.perf_counter()
            cp = cp_coupling(lmax, rank)
            fit_seconds = time.perf_counter() - t
            factors = (cp.a, cp.b, cp.c)
            row = {
                "lmax": lmax,
                "rank": rank,
                "rank_over_n": rank / n,
                "exact_rank": full,
                "relative_error": cp_error(T, factors),
                "equivariance_bound": equivariance_bound(T, factors),
                "equivariance_bound_frobenius": 2 * cp_error(T, factors) * float(np.linalg.norm(T)),
                "equivariance_error": equivariance_error(cp, lmax, args.rotations),
                "fit_or_cache_seconds": fit_seconds,
                "flops_per_pair": cp.flops_per_pair,
                "dense_flops_per_pair": dense_coupling(T).flops_per_pair,
            }
            rows.append(row)
            print(f"L={lmax} R={rank:5d} ({rank / n:5.2f} n): rel. error {row['relative_error']:.2e}  "
                  f"equivariance {row['equivariance_error']:.2e} <= bound {row['equivariance_bound']:.2e}  "
                  f"({fit_seconds:.1f} s)", flush=True)
    return rows


def ace_couplings(args):
    """ACE's invariant couplings of 3 and 4 features of degree <= 2 (pacemaker's coupling tree
    in the real CG of this package): sparse term count against CP cost and error. Per pair of
    features the sparse sum costs ``v nnz`` multiplications; the CP form ``sum_r prod_t
    (f_t[:, r] . A_t)`` costs ``R sum_t (2 l_t + 1)`` multiply-adds for the projections and
    ``(v - 1) R`` products."""
    couplings = []
    for ls in itertools.combinations_with_replacement(range(3), 3):
        if sum(ls) % 2 == 0 and abs(ls[0] - ls[1]) <= ls[2] <= ls[0] + ls[1]:
            G = np.einsum("abM,Mc->abc", clebsch_gordan(ls[0], ls[1], ls[2]), clebsch_gordan(ls[2], ls[2], 0)[:, :, 0])
            couplings.append((ls, (ls[2],), G))
    for ls in ((1, 1, 1, 1), (1, 1, 2, 2), (2, 2, 2, 2)):
        for L in range(max(abs(ls[0] - ls[1]), abs(ls[2] - ls[3])), min(ls[0] + ls[1], ls[2] + ls[3]) + 1):
            G = np.einsum("abM,cdN,MN->abcd", clebsch_gordan(ls[0], ls[1], L), clebsch_gordan(ls[2], ls[3], L),
                          clebsch_gordan(L, L, 0)[:, :, 0])
            couplings.append((ls, (L, L), G))
    rows = []
    for ls, lint, G in couplings:
        v, width = len(ls), sum(2 * l + 1 for l in ls)
        nnz = int(np.count_nonzero(np.abs(G) > 1e-14))
        full = exact_rank(G)
        row = {"ls": ls, "lint": lint, "nnz": nnz, "sparse_mults": v * nnz, "exact_rank": full,
               "cp_cost_at_exact_rank": full * (width + v - 1), "cp": []}
        for rank in (2, 4, 8, 16):
            if rank < full:
                row["cp"].append({"rank": rank, "cost": rank * (width + v - 1),
                                  "relative_error": cp_error(G, fit_cp(G, rank, seed=0))})
        rows.append(row)
        print(f"ACE coupling ls={ls} lint={lint}: nnz {nnz} ({v * nnz} mults), exact rank {full} "
              f"({row['cp_cost_at_exact_rank']} ops), " + ", ".join(f"R={c['rank']}: {c['relative_error']:.2f}" for c in row["cp"]), flush=True)
    return rows


def _run_line(run) -> str:
    m = run["machine"]
    command = " ".join(["python benchmarks/tensor_product.py"] + run["argv"])
    return (f"`{command}`; {m['cpu']}, {m['threads']} thread, "
            f"load average {m['load_average_1min_at_start']} at start")


def markdown(result) -> str:
    lines = ["# CP tensor product vs exact CG tensor product", ""]
    if "timings" in result:
        run = result["runs"]["timings"]
        lines += [
            "## Time per pair (ns) and flops per pair",
            "",
            _run_line(run) + " (a shared, loaded machine: absolute times are inflated, ratios within the run "
            f"are comparable). Process CPU time, best of {run['settings']['repeat']}, {run['settings']['pairs']} "
            "random pairs. n = (L+1)^2; cp:kn is rank k n.",
            "",
        ]
        names = list(result["timings"][0]["methods"])
        lines.append("| L | n | paths | nnz | " + " | ".join(names) + " |")
        lines.append("|---" * (4 + len(names)) + "|")
        for row in result["timings"]:
            cells = []
            for name in names:
                e = row["methods"][name]
                cells.append(f"{e['ns_per_pair']:.0f}" + (f" ({e['flops_per_pair']})" if "flops_per_pair" in e else ""))
            lines.append(f"| {row['lmax']} | {row['n']} | {row['paths']} | {row['nnz']} | " + " | ".join(cells) + " |")
        lines += ["", "Fitted exponents p in cost ~ (L+1)^p over L >= 2:", "", "| method | time | flops |", "|---|---|---|"]
        for name, e in result["exponents"].items():
            fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
            lines.append(f"| {name} | {fmt(e['time'])} | {fmt(e['flops'])} |")
        lines.append("")
    if "accuracy" in result:
        lines += [
            "## CP approximation and equivariance error against rank",
            "",
            _run_line(result["runs"]["accuracy"]) + ". Factors: ALS, seed 0, best of 3 starts; at the exact "
            "rank the slice-SVD form. Equivariance error: max over 8 random rotations and 256 random pairs of "
            "||D f(x, y) - f(D x, D y)|| / (||x|| ||y||).",
            "",
            "| L | R | R / n | rel. Frobenius error | equivariance error | bound 2 min_t ||(T - T_R)_(t)||_2 "
            "| bound 2 ||T - T_R||_F | CP flops / dense flops |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in result["accuracy"]:
            lines.append(
                f"| {r['lmax']} | {r['rank']}{' (exact)' if r['rank'] == r['exact_rank'] else ''} | {r['rank_over_n']:.2f} | "
                f"{r['relative_error']:.2e} | {r['equivariance_error']:.2e} | {r['equivariance_bound']:.2e} | "
                f"{r['equivariance_bound_frobenius']:.2e} | {r['flops_per_pair'] / r['dense_flops_per_pair']:.3f} |"
            )
        lines.append("")
    if "ace_couplings" in result:
        lines += [
            "## ACE's invariant couplings (degrees <= 2) in CP form",
            "",
            "Per B-function evaluation: the sparse term sum costs v nnz multiplications; the CP form costs "
            "R (sum_t (2 l_t + 1) + v - 1) operations.",
            "",
            "| ls | lint | nnz | sparse mults | exact rank | CP ops at exact rank | CP rel. error (ops) at R = 2, 4, 8, 16 |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in result["ace_couplings"]:
            cp = ", ".join(f"R={c['rank']}: {c['relative_error']:.2f} ({c['cost']})" for c in r["cp"])
            lines.append(f"| {tuple(r['ls'])} | {tuple(r['lint'])} | {r['nnz']} | {r['sparse_mults']} | {r['exact_rank']} | "
                         f"{r['cp_cost_at_exact_rank']} | {cp} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lmax", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--time-ranks", type=int, nargs="+", default=[1, 4], help="CP ranks timed, in units of (L+1)^2")
    parser.add_argument("--accuracy-ranks", type=int, nargs="+", default=[1, 2, 4, 8], help="in units of (L+1)^2")
    parser.add_argument("--rotations", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="L <= 3, 10^4 pairs: a smoke run")
    parser.add_argument("--name", default="tensor_product")
    parser.add_argument("--part", choices=["all", "accuracy", "ace_couplings", "timings"], default="all",
                        help="rerun one part, keeping the others from the existing results JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.lmax, args.pairs, args.repeat = [l for l in args.lmax if l <= 3], 10_000, 1
    if args.pairs % args.chunk:
        parser.error(f"--pairs ({args.pairs}) must be a multiple of --chunk ({args.chunk})")
    import sys

    previous = RESULTS / f"{args.name}.json"
    result = json.loads(previous.read_text()) if args.part != "all" and previous.exists() else {"runs": {}}
    parts = ["accuracy", "ace_couplings", "timings"] if args.part == "all" else [args.part]
    for part in parts:
        result["runs"][part] = {"machine": machine(threads=1), "argv": sys.argv[1:], "settings": vars(args)}
        if part == "accuracy":
            result["accuracy"] = accuracy(args)
        elif part == "ace_couplings":
            result["ace_couplings"] = ace_couplings(args)
        else:
            result["timings"], result["exponents"] = timings(args)
            print(result["exponents"])
    write_result(f"{args.name}.json", result)
    (RESULTS / f"{args.name}.md").write_text(markdown(result))
    print(f"wrote {RESULTS / (args.name + '.json')} and .md")


if __name__ == "__main__":
    main()
