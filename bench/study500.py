"""A whole study's cost per stage: N one-epoch linear models (each its own learning rate),
each evaluated, and a report over all of them, built by pipe from an empty cache, against the
same N models trained and evaluated in one plain PyTorch loop in one process (data loaded
once, 2 threads). The work is tiny (a 37 ms epoch), so what is timed is what a stage costs
beyond its work: scheduling, process starts, data loading, cache writes.

    bench/setup.sh                                              # once: PyTorch into bench/.venv
    bench/.venv/bin/python bench/study500.py                    # N = 500, 3 runs a side, A B A B
    bench/.venv/bin/python bench/study500.py --n 50 --runs 1

    # or time the two commands with any timer, after `study500.py setup DIR`:
    bench/.venv/bin/python bench/study500.py pipe DIR
    bench/.venv/bin/python bench/study500.py torch DIR

Prints the medians and their ratio; gates nothing.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT.parent / "shared" / "data" / "cifar-10-sample"


def lrs(n):
    """The variants' learning rates: 0.0001 … (n-1) · 0.0001, and the base's 0.05."""
    return [round((i + 1) * 1e-4, 6) for i in range(n - 1)]


def setup(d: Path, n: int, pipe: str, source: Path):
    (d / "pipelines").mkdir(parents=True, exist_ok=True)
    values = ", ".join(f"{lr:.6f}" for lr in lrs(n))
    (d / "pipelines" / "study.ron").write_text(f"""Pipeline(
    stages: [
        (name: "cifar10", kind: "download", config: (source: Local("{source}"))),
        (name: "data", kind: "normalize", inputs: ["cifar10"], config: (validation: 1000, scaling: Div256, seed: 0)),
        (name: "lin", kind: "train", inputs: ["data"], config: (model: Linear(), epochs: 1, batch_size: 256, optimizer: (lr: 0.05, momentum: 0.9), seed: 42), vary: {{"optimizer.lr": [{values}]}}),
        (name: "lin_eval", kind: "evaluate", inputs: ["lin", "data"]),
        (name: "lin_report", kind: "report", inputs: ["lin_eval"], target: "reports/lin.md"),
    ],
)
""")
    # The normalized data for the PyTorch side, from a cache of its own.
    subprocess.run([pipe, "--cache", "cache-data", "build", "-q", "study:data"], cwd=d, check=True,
                   stdout=subprocess.DEVNULL)
    out = subprocess.run([pipe, "--cache", "cache-data", "outputs", "study:data"], cwd=d, check=True,
                         capture_output=True, text=True).stdout
    data = d / "data"
    data.mkdir(exist_ok=True)
    for line in out.splitlines():
        path, obj = line.split("\t", 1)
        if not (data / path).exists():
            shutil.copy(obj, data / path)
    (d / "n.txt").write_text(str(n))


def run_pipe(d: Path, pipe: str):
    """The whole study from an empty cache: download, normalize, N trainings, N evaluations,
    the report."""
    for sub in ["cache", "reports"]:
        shutil.rmtree(d / sub, ignore_errors=True)
    subprocess.run([pipe, "build", "-q", "reports/lin.md"], cwd=d, check=True, stdout=subprocess.DEVNULL)


def run_torch(d: Path):
    """The same N models in one loop: SGD with momentum 0.9, batch 256, one epoch, Glorot
    initialization, validation accuracy after the epoch and test accuracy at the end."""
    import numpy as np
    import torch
    from torch import nn

    torch.set_num_threads(2)
    n = int((d / "n.txt").read_text())
    meta = json.loads((d / "data" / "meta.json").read_text())
    scale = np.array(meta["scale"], np.float32).reshape(1, 3, 1, 1)
    shift = np.array(meta["shift"], np.float32).reshape(1, 3, 1, 1)

    def load(split):
        x = np.load(d / "data" / f"{split}_x.npy").astype(np.float32) * scale + shift
        y = np.load(d / "data" / f"{split}_y.npy").astype(np.int64)
        return torch.from_numpy(x.reshape(len(x), -1)), torch.from_numpy(y)

    (x, y), (vx, vy), (tx, ty) = load("train"), load("validation"), load("test")
    results = []
    for lr in [0.05] + lrs(n):
        torch.manual_seed(42)
        model = nn.Linear(3072, 10)
        nn.init.xavier_uniform_(model.weight)
        nn.init.zeros_(model.bias)
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()
        order = torch.randperm(len(y))
        for i in range(0, len(y), 256):
            idx = order[i : i + 256]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            val = (model(vx).argmax(1) == vy).float().mean().item()
            test = (model(tx).argmax(1) == ty).float().mean().item()
        results.append((lr, val, test))
    (d / "torch-results.json").write_text(json.dumps(results))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", default="compare", choices=["compare", "setup", "pipe", "torch"])
    ap.add_argument("dir", nargs="?", help="the project folder (default: a temporary one)")
    ap.add_argument("--n", type=int, default=500, help="models in the study, the base included")
    ap.add_argument("--runs", type=int, default=3, help="timed runs a side, alternated")
    ap.add_argument("--pipe", default=str(ROOT / "target" / "release" / "pipe"))
    ap.add_argument("--data", default=str(SAMPLE), help="a CIFAR-10 binary folder")
    a = ap.parse_args()
    d = Path(a.dir or tempfile.mkdtemp(prefix="pipe-bench-study-")).resolve()
    pipe = os.path.abspath(a.pipe)
    if a.what == "setup":
        return setup(d, a.n, pipe, Path(a.data).resolve())
    if a.what == "pipe":
        return run_pipe(d, pipe)
    if a.what == "torch":
        return run_torch(d)
    setup(d, a.n, pipe, Path(a.data).resolve())
    times = {"pipe": [], "torch": []}
    for _ in range(a.runs):
        for side in ["pipe", "torch"]:
            start = time.perf_counter()
            subprocess.run([sys.executable, __file__, side, str(d), "--pipe", pipe], check=True)
            times[side].append(time.perf_counter() - start)
    p, t = statistics.median(times["pipe"]), statistics.median(times["torch"])
    print(f"{a.n} one-epoch linear models, train + evaluate each, one report; {a.runs} runs a side, alternated")
    print(f"pipe (empty cache, whole build): median {p:.2f} s  runs {[round(s, 2) for s in times['pipe']]}")
    print(f"PyTorch loop (one process):      median {t:.2f} s  runs {[round(s, 2) for s in times['torch']]}")
    print(f"pipe / PyTorch: {p / t:.2f}x")


if __name__ == "__main__":
    main()
