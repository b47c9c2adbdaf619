"""Peak memory of a full NbMoTaW level-16 training pass (issue 10: must stay below 8 GiB).

Usage::

    python benchmarks/memory.py [--level 16] [--max-atoms 2048] [--no-solve] [--data DIR]

The measurement runs in a child process (one thread, one core) so that its peak resident set
(``ru_maxrss`` of the child, read by the parent with ``RUSAGE_CHILDREN``) is that of the pass
alone. The child reads all NbMoTaW training groups (every non-``_Test`` file, ~107k atoms),
builds an untrained level-16 MTP (4 species, cutoff 5, min_dist 2) with its random start,
prepares the padded chunks (:func:`mlipress.loss.prepare`), then runs one
loss+gradient pass (:meth:`mlipress.loss.Objective.value_and_grad`, compile included) and,
unless ``--no-solve``, one exact linear solve (:func:`mlipress.fit.linear.linear_solve`, what
variable projection does at every evaluation). After each phase it records the resident set
(``VmRSS``) and its high-water mark (``VmHWM``) from ``/proc/self/status``, and the process
CPU and wall time. Writes ``benchmarks/results/memory.json`` and ``memory.md``.
"""

from __future__ import annotations

from _common import pin_one_core  # noqa: E402

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from _common import RESULTS, machine, write_result  # noqa: E402

GIB = 1024**3
LIMIT_GIB = 8.0


def _status_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child(args) -> dict:
    """The measured run; returns its phases (printed as JSON on the last line)."""
    pin_one_core()
    import jax

    import mlipress  # noqa: F401  (float64)
    from _common import NBMOTAW_SPECIES, nbmotaw
    from mlipress.fit.linear import linear_solve
    from mlipress.loss import Objective, prepare
    from mlipress.models.mtp.basis import untrained_mtp

    phases = []
    c0, t0 = time.process_time(), time.perf_counter()

    def mark(name: str, **extra) -> None:
        phases.append({"phase": name, "rss_GiB": _status_kib("VmRSS") * 1024 / GIB,
                       "peak_GiB": _status_kib("VmHWM") * 1024 / GIB, "cpu_s": time.process_time() - c0,
                       "wall_s": time.perf_counter() - t0, **extra})
        print(json.dumps(phases[-1]), file=sys.stderr, flush=True)

    mark("start")
    train, _ = nbmotaw(args.data)
    mark("read data", configurations=len(train), atoms=int(train.natoms))
    mtp = untrained_mtp(args.level, len(NBMOTAW_SPECIES), 2.0, 5.0)
    params = mtp.init(0)
    data = prepare(train, mtp, max_atoms=args.max_atoms)
    shapes = sorted(data.shapes)
    mark("prepare", chunks=len(data.chunks), shapes=[list(s) for s in shapes])
    obj = Objective(mtp, data)
    f, g = obj.value_and_grad(params)
    jax.block_until_ready(g)
    mark("loss+gradient pass (with compile)", f=f)
    f, g = obj.value_and_grad(params)
    jax.block_until_ready(g)
    mark("loss+gradient pass", f=f)
    if not args.no_solve:
        _, loss = linear_solve(mtp, params, data)
        mark("linear solve (with compile)", data_loss=loss)
    return {"phases": phases, "n_params": int(sum(x.size for x in jax.tree_util.tree_leaves(params)))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--level", type=int, default=16)
    p.add_argument("--max-atoms", type=int, default=2048)
    p.add_argument("--no-solve", action="store_true", help="skip the exact linear solve")
    p.add_argument("--data", default=None, help="NbMoTaW folder (default: shared data)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return

    cmd = [sys.executable, __file__, "--child", "--level", str(args.level), "--max-atoms", str(args.max_atoms)]
    cmd += ["--no-solve"] * args.no_solve + (["--data", args.data] if args.data else [])
    t0 = time.perf_counter()
    run = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    peak = usage.ru_maxrss * 1024 / GIB  # Linux: KiB
    result.update({
        "benchmark": "memory", "level": args.level, "max_atoms": args.max_atoms,
        "peak_rss_GiB": peak, "limit_GiB": LIMIT_GIB, "below_limit": peak < LIMIT_GIB,
        "child_cpu_s": usage.ru_utime + usage.ru_stime, "child_wall_s": wall, "machine": machine(threads=1),
    })
    write_result("memory.json", result)
    lines = [
        f"# Peak memory of a NbMoTaW level-{args.level} training pass",
        "",
        f"{result['phases'][1]['configurations']} training configurations, {result['phases'][1]['atoms']} atoms, "
        f"{result['phases'][2]['chunks']} chunks of at most {args.max_atoms} atoms, {result['n_params']} parameters; "
        f"one thread, child process CPU {result['child_cpu_s']:.0f} s, wall {wall:.0f} s "
        f"(load average {result['machine']['load_average_1min_at_start']:.1f} at start).",
        "",
        f"**Peak resident set (ru_maxrss): {peak:.2f} GiB** (limit {LIMIT_GIB:.0f} GiB).",
        "",
        "| phase | resident GiB | peak so far GiB | CPU s | wall s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {ph['phase']} | {ph['rss_GiB']:.2f} | {ph['peak_GiB']:.2f} | {ph['cpu_s']:.0f} | {ph['wall_s']:.0f} |"
              for ph in result["phases"]]
    (RESULTS / "memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
