#!/usr/bin/env python3
"""wasm-orch against Dask's threaded scheduler, side by side, on the same machine in one go.

Four shapes of no-op tasks: a chain (each task depends on the one before) and a fan-out (no
dependencies), of 1,000 and 10,000 tasks. wasm-orch runs every task in its own sandboxed Wasm
instance (the `noop` guest, no filesystem); Dask calls a plain Python function. Two paths:

- embedded: the time to run the DAG inside a process that has everything loaded
  (wasm-orch: `Runtime::start` to the report, through the release `shapes` benchmark; Dask:
  `dask.threaded.get` on the graph);
- command line: the wall time of a whole `wasm-orch run FILE` process (parse and validate the
  file, load the compiled component from the disk cache, run, write events.jsonl and
  results.json, print the summary), against the same Dask in-process time (strict), and
  against a whole `python` process that imports Dask and runs the graph (like for like).

Usage:
    python3 bench/vs_dask.py --install   # creates target/dask-venv with dask from PyPI first
    python3 bench/vs_dask.py             # uses a dask importable by this python

Each figure is the median of several runs; ratios are Dask's time over wasm-orch's (above 1:
wasm-orch is faster).
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "target", "dask-venv")
DASK = "dask==2026.8.0"
SHAPES = [("chain", 1000), ("fan-out", 1000), ("chain", 10000), ("fan-out", 10000)]


def repeats(n):
    return 7 if n <= 1000 else 5


def ensure_dask(install):
    try:
        import dask  # noqa: F401
        return
    except ImportError:
        pass
    py = os.path.join(VENV, "bin", "python")
    if install:
        if not os.path.exists(py):
            subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([py, "-m", "pip", "install", "--quiet", DASK], check=True)
    if os.path.exists(py) and os.path.realpath(sys.prefix) != os.path.realpath(VENV):
        os.execv(py, [py, __file__] + [a for a in sys.argv[1:] if a != "--install"])
    sys.exit(f"dask is not installed: run `python3 {sys.argv[0]} --install` ({DASK} into {VENV})")


def noop(*args):
    return None


def graph(shape, n):
    if shape == "chain":
        g = {"t0": (noop,)}
        for i in range(1, n):
            g[f"t{i}"] = (noop, f"t{i - 1}")
        return g, [f"t{n - 1}"]
    return {f"t{i}": (noop,) for i in range(n)}, [f"t{i}" for i in range(n)]


def dask_embedded(shape, n):
    import dask.threaded

    g, keys = graph(shape, n)
    times = []
    for _ in range(repeats(n)):
        started = time.perf_counter()
        dask.threaded.get(g, keys)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


DASK_PROCESS = """
import sys, dask.threaded
def noop(*a): return None
shape, n = sys.argv[1], int(sys.argv[2])
if shape == "chain":
    g = {"t0": (noop,)}
    for i in range(1, n): g[f"t{i}"] = (noop, f"t{i-1}")
    keys = [f"t{n-1}"]
else:
    g = {f"t{i}": (noop,) for i in range(n)}; keys = list(g)
dask.threaded.get(g, keys)
"""


def dask_process(shape, n):
    times = []
    for _ in range(repeats(n)):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", DASK_PROCESS, shape, str(n)], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cargo(*args):
    return subprocess.run(["cargo", *args], cwd=ROOT, check=True, capture_output=True, text=True)


def orch_embedded():
    out = cargo("bench", "-p", "wasm-orch-tests", "--bench", "shapes", "--", "--json").stdout
    figures = {}
    for line in out.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            figures[(row["shape"], row["tasks"])] = row["seconds"]
    return figures


def workflow(dir, shape, n):
    noop_wasm = os.path.join(ROOT, "target", "guests", "noop.wasm")
    lines = [
        "[workflow]", 'name = "bench"', "max_concurrency = 16",
        "[agents.noop]", f'component = "{noop_wasm}"', "workdir = false",
    ]
    for i in range(n):
        lines += ["[[tasks]]", f'id = "t{i}"', 'agent = "noop"']
        if shape == "chain" and i > 0:
            lines.append(f'depends_on = ["t{i - 1}"]')
    path = os.path.join(dir, f"{shape}-{n}.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def orch_cli(shape, n, scratch):
    binary = os.path.join(ROOT, "target", "release", "wasm-orch")
    path = workflow(scratch, shape, n)
    cache = os.path.join(ROOT, "target", "bench-cache")
    cmd = [binary, "run", path, "--plain", "--state-dir", os.path.join(scratch, "state"),
           "--cache-dir", cache]
    subprocess.run(cmd, check=True, capture_output=True)  # warm: compile into the disk cache
    times = []
    for _ in range(repeats(n)):
        started = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main():
    ensure_dask("--install" in sys.argv)
    import dask

    cpus = os.cpu_count()
    print(f"wasm-orch vs Dask {dask.__version__} (threaded scheduler), {cpus} CPUs, no-op tasks")
    print("building (release) and running the embedded wasm-orch shapes ...", flush=True)
    cargo("xtask", "guests")
    cargo("build", "--release", "-p", "wasm-orch", "--bin", "wasm-orch")
    orch = orch_embedded()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for shape, n in SHAPES:
            d = dask_embedded(shape, n)
            dp = dask_process(shape, n)
            cli = orch_cli(shape, n, scratch)
            rows.append((shape, n, d, orch[(shape, n)], cli, dp))
    print()
    print("embedded (time to run the DAG, median)")
    print(f"  {'shape':<8} {'tasks':>6} {'dask':>10} {'wasm-orch':>10} {'ratio':>7}")
    for shape, n, d, o, _, _ in rows:
        print(f"  {shape:<8} {n:>6} {d*1e3:>8.1f}ms {o*1e3:>8.1f}ms {d/o:>6.2f}×")
    print()
    print("command line (`wasm-orch run FILE`, whole process, median)")
    print(f"  {'shape':<8} {'tasks':>6} {'wasm-orch':>10} {'dask in-proc':>13} {'ratio':>7} "
          f"{'dask process':>13} {'ratio':>7}")
    for shape, n, d, _, cli, dp in rows:
        print(f"  {shape:<8} {n:>6} {cli*1e3:>8.1f}ms {d*1e3:>11.1f}ms {d/cli:>6.2f}× "
              f"{dp*1e3:>11.1f}ms {dp/cli:>6.2f}×")


if __name__ == "__main__":
    main()
