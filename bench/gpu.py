"""Every family on CUDA and burn-cuda's warm-up, in one bounded run on a lent GPU machine.

    python3 bench/gpu.py --pipe PIPE --data CIFAR_FOLDER --out DIR [--phase1 160] [--deadline 310]

First PyTorch eager, every family in one process, alone on the GPU (skip: --no-torch).

Phase 1, the cold start: every family x every setting of --configs (fusion on/off; for a
binary built with `--features autotune` also the autotune level) at once, each in a fresh
project, so with an empty kernel cache; pipe only, 2 epochs (linear 20), killed after
--phase1 seconds. Gives each run's first epoch, its kernel compilations (PIPE_KERNEL_LOG)
and, where it ended, steady epochs. The runs share the GPU and the machine's cores, so their
first epochs are upper bounds: compare them with each other.

Phase 2, one run at a time: for the best setting of phase 1 and the best with the other
fusion choice, each family retrained (`--force`) in the project phase 1 left: a second
process with a persistent kernel cache. PyTorch runs the same data, model, batch and
optimizer (bench/torch_train.py). Peak GPU memory is read from nvidia-smi samples taken
during each run. Nothing starts after --deadline seconds (counted from the start).

Writes DIR/gpu.json (every number), DIR/gpu.md (the tables) and DIR/logs.tar.gz (stage
logs, kernel logs, metrics).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from train import FAMILIES, Project, steady  # noqa: E402

# The autotune levels only mean something to a binary built with `--features autotune`.
CONFIGS = {
    "fused": {"PIPE_CUDA_FUSION": "1"},
    "unfused": {"PIPE_CUDA_FUSION": "0"},
    "fused-balanced": {"PIPE_CUDA_FUSION": "1", "CUBECL_AUTOTUNE_LEVEL": "balanced"},
    "unfused-balanced": {"PIPE_CUDA_FUSION": "0", "CUBECL_AUTOTUNE_LEVEL": "balanced"},
    "fused-minimal": {"PIPE_CUDA_FUSION": "1", "CUBECL_AUTOTUNE_LEVEL": "minimal"},
    "unfused-minimal": {"PIPE_CUDA_FUSION": "0", "CUBECL_AUTOTUNE_LEVEL": "minimal"},
}
START = time.time()


def log(msg):
    print(f"[{time.time() - START:6.1f}s] {msg}", flush=True)


class Sampler(threading.Thread):
    """nvidia-smi every 0.3 s: the GPU's used memory and each process's."""

    def __init__(self):
        super().__init__(daemon=True)
        self.rows, self.stop = [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            t = time.time()
            try:
                tot = subprocess.run(
                    ["nvidia-smi", "--query-gpu=memory.used,utilization.gpu", "--format=csv,noheader,nounits"],
                    capture_output=True, text=True, timeout=5).stdout.strip()
                apps = subprocess.run(
                    ["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory", "--format=csv,noheader,nounits"],
                    capture_output=True, text=True, timeout=5).stdout.strip()
                used, util = (float(v) for v in tot.split(",")[:2])
                procs = []
                for line in apps.splitlines():
                    parts = [p.strip() for p in line.split(",")]
                    if len(parts) == 3 and parts[2].replace(".", "").isdigit():
                        procs.append((int(parts[0]), parts[1], float(parts[2])))
                self.rows.append({"t": t, "used_mib": used, "util": util, "procs": procs})
            except Exception as e:  # a sample lost is not a run lost
                self.rows.append({"t": t, "error": str(e)})
            self.stop.wait(0.3)

    def peak(self, t0, t1, name):
        """Peak memory in [t0, t1]: of processes whose name contains `name`, and of the GPU."""
        rows = [r for r in self.rows if t0 <= r["t"] <= t1 and "used_mib" in r]
        procs = [m for r in rows for (_, n, m) in r["procs"] if name in n]
        return {
            "process_mib": max(procs) if procs else None,
            "gpu_used_mib": max((r["used_mib"] for r in rows), default=None),
            "samples": len(rows),
        }


def kernel_log_counts(path: Path):
    if not path.exists():
        return None
    text = path.read_text(errors="replace")
    names = {}
    for line in text.splitlines():
        if line.startswith("[Compiling kernel]"):
            n = line[len("[Compiling kernel]"):].strip() or "?"
            names[n] = names.get(n, 0) + 1
    top = sorted(names.items(), key=lambda kv: -kv[1])[:8]
    return {"compiled": sum(names.values()), "distinct_names": len(names), "top": top,
            "autotune_lines": sum(1 for l in text.splitlines() if "autotune" in l.lower() or "fastest" in l.lower()),
            "bytes": len(text)}


def scratch_metrics(work: Path):
    """Epochs of a run killed before it finished (its checkpoint's state)."""
    for m in sorted(work.glob("cache/scratch/**/checkpoint/state.json")):
        return json.loads(m.read_text()).get("metrics")
    return None


def kill_group(p):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            pass


def run_bounded(cmd, env, cwd, timeout, stdout_path):
    t0 = time.time()
    with open(stdout_path, "w") as f:
        p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = p.wait(timeout=max(1, timeout))
        except subprocess.TimeoutExpired:
            kill_group(p)
            rc = "killed"
    return rc, t0, time.time()


def model_hash(proj, stage):
    try:
        o = proj.outputs(stage)
        return o["model.bin"].name[:12]
    except Exception:
        return None


def phase1(a, families, work):
    procs = []
    for cfg in a.configs:
        extra = CONFIGS[cfg]
        for fam in families:
            w = work / f"{cfg}-{fam[0]}"
            w.mkdir(parents=True, exist_ok=True)
            env = os.environ | extra | {"PIPE_KERNEL_LOG": str(w / "kernels.log"), "PYTHONUNBUFFERED": "1"}
            cmd = [sys.executable, str(ROOT / "bench" / "train.py"), "--pipe", a.pipe, "--device", a.device,
                   "--families", fam[0], "--no-torch", "--workdir", str(w), "--out", str(w / "result.json"),
                   "--data", a.data, "--epochs", str(a.epochs)]
            f = open(w / "stdout.txt", "w")
            p = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
            procs.append((cfg, fam[0], w, p, time.time(), f))
    log(f"phase 1: {len(procs)} runs started")
    deadline = time.time() + a.phase1
    ends = {}
    while len(ends) < len(procs) and time.time() < deadline:
        for cfg, fam, w, p, t0, f in procs:
            if (cfg, fam) not in ends and p.poll() is not None:
                ends[(cfg, fam)] = (p.returncode, time.time() - t0)
                log(f"  {cfg} {fam}: rc {p.returncode} after {time.time() - t0:.0f}s")
        time.sleep(0.5)
    out = []
    for cfg, fam, w, p, t0, f in procs:
        if (cfg, fam) not in ends:
            kill_group(p)
            ends[(cfg, fam)] = ("killed", time.time() - t0)
        f.close()
        rc, wall = ends[(cfg, fam)]
        r = {"config": cfg, "family": fam, "rc": rc, "wall_seconds": wall,
             "kernels": kernel_log_counts(w / "kernels.log")}
        done = json.loads((w / "result.json").read_text())["results"] if (w / "result.json").exists() else []
        if rc == 0 and done:
            res = done[0]["pipe"]
            r.update(first_epoch=res["first_epoch_seconds"], steady_epoch=res["steady_epoch_seconds"],
                     test_accuracy=res["test_accuracy"], backend=res["backend"],
                     images_per_second=res["train_images_per_second"])
        else:
            m = scratch_metrics(w)
            if m:
                r["partial_epochs"] = [e.get("seconds") for e in m]
        out.append(r)
    return out


def rank(p1):
    """Settings by runs finished, then by the summed first epochs of the families all finished."""
    configs = sorted({r["config"] for r in p1})
    done = {c: {r["family"]: r for r in p1 if r["config"] == c and "first_epoch" in r} for c in configs}
    common = set.intersection(*(set(d) for d in done.values())) if done else set()
    return sorted(configs, key=lambda c: (-len(done[c]),
                                          sum(done[c][f]["first_epoch"] for f in common),
                                          sum(r["first_epoch"] for r in done[c].values())))


def phase2(a, families, work, sampler, order):
    out = []
    # The best setting, then the best with the other fusion choice: fusion's steady-state cost.
    fused = lambda c: c.startswith("fused")
    second = next((c for c in order[1:] if fused(c) != fused(order[0])), None)
    for cfg in [order[0]] + ([second] if second else []):
        for fam in families:
            name, model, batch, momentum, torch_family, times = fam
            if time.time() > START + a.deadline:
                log(f"deadline: {cfg} {name} not run")
                continue
            w = work / f"{cfg}-{name}"
            if not (w / "pipelines").exists():
                continue
            # pipe's own calls below (status for the outputs) must see the setting: it is in the key.
            os.environ.update(CONFIGS[cfg])
            proj = Project(w, a.pipe, a.device, Path(a.data), 1000, a.epochs, [fam])
            before = model_hash(proj, f"b:t_{name}")
            env = os.environ | CONFIGS[cfg] | {"PIPE_KERNEL_LOG": str(w / "kernels2.log")}
            left = START + a.deadline - time.time()
            rc, t0, t1 = run_bounded(
                [a.pipe, "--device", a.device, "--cache", "cache", "build", "--force", f"b:t_{name}", f"b:e_{name}"],
                env, w, min(a.run_limit, left), w / "phase2.txt")
            r = {"config": cfg, "family": name, "rc": rc, "wall_seconds": t1 - t0,
                 "memory": sampler.peak(t0, t1, "pipe"), "kernels": kernel_log_counts(w / "kernels2.log"),
                 "model_bin_phase1": before}
            if rc == 0:
                o = proj.outputs(f"b:t_{name}")
                metrics = [json.loads(l) for l in o["metrics.jsonl"].read_text().splitlines()]
                r.update(first_epoch=metrics[0]["seconds"], steady_epoch=steady([m["seconds"] for m in metrics]),
                         epochs=len(metrics),
                         images_per_second=json.loads(o["summary.json"].read_text())["train_images_per_second"],
                         backend=json.loads(o["summary.json"].read_text())["backend"],
                         test_accuracy=json.loads(proj.outputs(f"b:e_{name}")["evaluation.json"].read_text())["final"]["accuracy"],
                         model_bin=model_hash(proj, f"b:t_{name}"))
            log(f"  phase 2 {cfg} {name}: rc {rc}, {t1 - t0:.1f}s, first {r.get('first_epoch')}, steady {r.get('steady_epoch')}")
            out.append(r)
            save(a, "phase2", out)
    return out


def torch_all(a, families, work, sampler):
    """PyTorch eager, every family in one process (one CUDA start-up), before pipe's runs
    so that nothing else is on the GPU."""
    w = work / "torch"
    proj = Project(w, a.pipe, "cpu", Path(a.data), 1000, a.epochs, families)
    proj.build("b:data")
    data = proj.folder("b:data")
    calls = [["--data", str(data), "--family", f[4], "--epochs", str(a.epochs * f[5]), "--batch", str(f[2]),
              "--momentum", str(f[3]), "--device", a.device, "--threads", "16"] for f in families]
    code = ("import sys, json; sys.path.insert(0, %r); import torch_train\n"
            "for args in json.loads(sys.argv[1]):\n"
            "    sys.argv = ['torch_train.py'] + args\n"
            "    torch_train.main()\n    sys.stdout.flush()\n") % str(ROOT / "bench")
    rc, t0, t1 = run_bounded([sys.executable, "-c", code, json.dumps(calls)], os.environ, w, a.torch_limit, w / "torch.txt")
    out = []
    for line in (w / "torch.txt").read_text().splitlines():
        if not line.startswith("{"):
            continue
        j = json.loads(line)
        out.append({"config": "torch", "family": next(f[0] for f in families if f[4] == j["family"]),
                    "first_epoch": j["epochs"][0]["seconds"], "steady_epoch": steady([e["seconds"] for e in j["epochs"]]),
                    "epochs": len(j["epochs"]), "images_per_second": j["train_images_per_second"],
                    "test_accuracy": j["test_accuracy"], "peak_reserved_mib": j.get("peak_gpu_reserved_mib"),
                    "version": j["torch"], "rc": 0, "wall_seconds": None})
    log(f"torch: rc {rc}, {t1 - t0:.1f}s, {len(out)} families")
    return out, {"rc": rc, "wall_seconds": t1 - t0, "memory": sampler.peak(t0, t1, "python")}


def save(a, key, value):
    """Results so far, in case the call is cut short."""
    path = Path(a.out) / "gpu.json"
    d = json.loads(path.read_text()) if path.exists() else {}
    d[key] = value
    path.write_text(json.dumps(d, indent=1))


def fmt(v, p=3):
    return "–" if v is None else (f"{v:.{p}f}" if isinstance(v, float) else str(v))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipe", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/pipe-gpu")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--device", default="cuda", help="cpu only to try this script without a GPU")
    ap.add_argument("--families", default=",".join(f[0] for f in FAMILIES))
    ap.add_argument("--phase1", type=float, default=160)
    ap.add_argument("--deadline", type=float, default=310)
    ap.add_argument("--run-limit", type=float, default=90)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--torch-limit", type=float, default=90)
    ap.add_argument("--configs", default="fused,unfused", help=f"of {list(CONFIGS)}")
    a = ap.parse_args()
    a.pipe, a.data = os.path.abspath(a.pipe), os.path.abspath(a.data)
    out, work = Path(a.out), Path(a.work)
    out.mkdir(parents=True, exist_ok=True)
    families = [f for f in FAMILIES if f[0] in a.families.split(",")]
    a.configs = a.configs.split(",")

    env_info = {k: subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip() for k, c in {
        "gpu": "nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader",
        "cpus": "nproc", "torch": f"{sys.executable} -c 'import torch; print(torch.__version__)'",
        "nvrtc": "ls /usr/local/cuda/lib64/libnvrtc.so* 2>/dev/null | head -3", "date": "date -u"}.items()}
    log(f"env: {env_info}")
    sampler = Sampler()
    sampler.start()
    time.sleep(1)
    results = {"env": env_info, "args": vars(a)}
    results["idle"] = sampler.peak(START, time.time(), "")
    save(a, "env", env_info)
    try:
        if not a.no_torch:
            results["torch"], results["torch_process"] = torch_all(a, families, work, sampler)
            save(a, "torch", results["torch"])
        results["phase1"] = phase1(a, families, work)
        save(a, "phase1", results["phase1"])
        order = rank(results["phase1"])
        results["order"] = order
        log(f"settings ranked: {order}")
        results["phase2"] = phase2(a, families, work, sampler, order)
    finally:
        sampler.stop.set()
        results["samples"] = sampler.rows
        (out / "gpu.json").write_text(json.dumps(results, indent=1))
        with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
            for p in work.rglob("*"):
                if p.is_file() and p.suffix in {".log", ".txt", ".json", ".jsonl", ".ron"} and "objects" not in p.parts:
                    if p.stat().st_size < 20_000_000:
                        tar.add(p, arcname=str(p.relative_to(work)))
    lines = ["| setting | family | rc | wall s | first epoch s | steady epoch s | test acc | kernels compiled |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results.get("phase1", []):
        k = r.get("kernels") or {}
        lines.append(f"| {r['config']} | {r['family']} | {r['rc']} | {r['wall_seconds']:.0f} | {fmt(r.get('first_epoch'), 1)} "
                     f"| {fmt(r.get('steady_epoch'))} | {fmt(r.get('test_accuracy'))} | {k.get('compiled', '–')} |"
                     + (f" partial {r['partial_epochs']}" if r.get("partial_epochs") else ""))
    lines += ["", "| phase 2 | family | rc | wall s | first epoch s | steady epoch s | img/s | test acc | peak MiB (proc / gpu) | kernels compiled | model.bin p1 / p2 |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results.get("torch", []) + results.get("phase2", []):
        m, k = r.get("memory") or {}, r.get("kernels") or {}
        lines.append(f"| {r['config']} | {r['family']} | {r['rc']} | {fmt(r.get('wall_seconds'), 1)} | {fmt(r.get('first_epoch'), 2)} "
                     f"| {fmt(r.get('steady_epoch'))} | {fmt(r.get('images_per_second'), 0)} | {fmt(r.get('test_accuracy'))} "
                     f"| {fmt(m.get('process_mib', r.get('peak_reserved_mib')), 0)} / {fmt(m.get('gpu_used_mib'), 0)} | {k.get('compiled', '–')} "
                     f"| {r.get('model_bin_phase1', '–')} / {r.get('model_bin', '–')} |")
    table = "\n".join(lines)
    (out / "gpu.md").write_text(table + "\n")
    print(table, flush=True)


if __name__ == "__main__":
    main()
