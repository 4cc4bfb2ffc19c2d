"""pipe against Snakemake on a real Slurm cluster: the orchestration benchmark's DAG as jobs.

    bash tests/slurm/cluster.sh start                    # the one-node test cluster
    bench/setup.sh                                       # once: peers into bench/.venv, release build
    bench/.venv/bin/pip install snakemake-executor-plugin-slurm==2.8.0
    SLURM_CONF=/tmp/pipe-slurm/slurm.conf bench/.venv/bin/python bench/slurm.py --sizes 20,100

The DAG is bench/orchestration.py's (a dataset stage, N training variants, an evaluation each,
one report: 2N + 2 trivial shell bodies) and every stage becomes one Slurm job in both tools:
pipe with `slurm.ron` naming its two command kinds (`Slurm(kinds: ["command",
"command_gather"])`, nothing else), Snakemake 9 with `snakemake-executor-plugin-slurm` and no
profile. Each tool runs as its documentation shows, with its defaults:

    pipe build --executor slurm reports/bench.md
    snakemake --executor slurm --jobs 100 --slurm-status-command squeue

Snakemake's one non-default flag: the plugin checks job states with `sacct` whenever `sacct` is on
the PATH, and on a cluster without accounting (slurmdbd), like this one, `sacct` answers
"accounting storage is disabled" and Snakemake never sees a job end (it waited 49 minutes on
one 1-second job before we stopped it). `--slurm-status-command squeue` is the plugin's own
alternative, and its log says squeue "should work reliably" here (MinJobAge 600 s).

Measured, from an empty cache / an empty working folder:
  - wall: from starting the command to its exit;
  - last job: from starting the command to the end of the last of its Slurm jobs;
  - lag: for every job with parents (each evaluation: its training; the report: every
    evaluation; each training: the dataset), Slurm's SubmitTime minus the latest EndTime of
    its parents (whole seconds: what Slurm records). Median and maximum.
The jobs are read back from `scontrol show job` (the test cluster keeps ended jobs for 600 s)
and counted: Snakemake must have run exactly 2N + 2 jobs; pipe N + 2, because it runs each
evaluation in its training's job (its build log, cache/log/runs.jsonl, must show all 2N + 2
stages built by those jobs), or the script fails. For pipe, the report's parents are the
training jobs, which end after their evaluations.

Snakemake's jobs call `srun` inside their batch script, and `srun` on a node reads
/etc/slurm/slurm.conf (SLURM_CONF is not passed down to it), so the script links the test
cluster's configuration there first, as a real cluster has it.
"""

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from orchestration import BIN, ROOT, Pipe, Snakemake, sh  # noqa: E402


def slurm_jobs(workdir: Path):
    """Every job Slurm still knows that ran in `workdir`: dicts of scontrol's fields."""
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True).stdout
    jobs = []
    for line in out.splitlines():
        fields = {}
        for word in line.split(" "):
            if "=" in word:
                k, v = word.split("=", 1)
                fields.setdefault(k, v)
        if fields.get("WorkDir") == str(workdir):
            jobs.append(fields)
    return jobs


def when(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp).timestamp()


def identity(tool: str, job) -> tuple:
    """(step, variant) of a job: step is data, train, eval or report."""
    if tool == "pipe":
        # JobName=pipe:bench:train[env.LR=0.000200] (the base variant has no label)
        name = job["JobName"].removeprefix("pipe:bench:")
        step, _, label = name.partition("[")
        return step, label.rstrip("]")
    # Comment=rule_train_wildcards_i=3 (no wildcards: rule_data)
    comment = job["Comment"].removeprefix("rule_")
    step, _, wildcards = comment.partition("_wildcards_")
    return step, wildcards.removeprefix("i=")


def lags(tool: str, jobs) -> list:
    by = {identity(tool, j): j for j in jobs}
    end = {k: when(j["EndTime"]) for k, j in by.items()}
    trains = {v for (s, v) in by if s == "train"}
    evals = {v for (s, v) in by if s == "eval"}
    if tool == "pipe":
        # each evaluation ran in its training's job
        assert not evals, evals
        by.update({("eval", v): by[("train", v)] for v in trains})
        end = {k: when(j["EndTime"]) for k, j in by.items()}
        evals = set(trains)
    out = []
    for (step, variant), j in by.items():
        if step == "train":
            parents = [("data", "")]
        elif step == "eval":
            if tool == "pipe":
                continue  # not a job of its own
            # both tools label an evaluation with its training's variant
            parents = [("train", variant)]
        elif step == "report":
            parents = [("eval", v) for v in evals]
        else:
            continue
        if not all(p in end for p in parents):
            sys.exit(f"{tool}: job {step}[{variant}] has parents Slurm no longer shows")
        out.append(when(j["SubmitTime"]) - max(end[p] for p in parents))
    assert trains == evals, (tool, trains ^ evals)
    return out


def wait_queue_empty():
    while subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip():
        time.sleep(1)


def run_pipe(d: Path, n: int, binary: str):
    Pipe(d, n, binary)
    (d / "slurm.ron").write_text('Slurm(kinds: ["command", "command_gather"])\n')
    start = time.time()
    took, _ = sh([binary, "build", "--executor", "slurm", "reports/bench.md"], d)
    if not (d / "reports" / "bench.md").exists():
        sys.exit("pipe: no report")
    return start, took


def run_snakemake(d: Path, n: int):
    Snakemake(d, n)
    start = time.time()
    took, _ = sh([str(BIN / "snakemake"), "--executor", "slurm", "--jobs", "100",
                          "--slurm-status-command", "squeue"], d)
    if not (d / "report.md").exists():
        sys.exit("snakemake: no report")
    return start, took


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="20,100")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--tools", default="pipe,snakemake")
    ap.add_argument("--pipe", default=str(ROOT / "target" / "release" / "pipe"))
    ap.add_argument("--out", help="write the results as JSON here")
    a = ap.parse_args()
    if not os.environ.get("SLURM_CONF"):
        sys.exit("set SLURM_CONF (the test cluster's: /tmp/pipe-slurm/slurm.conf)")
    conf = Path(os.environ["SLURM_CONF"])
    Path("/etc/slurm").mkdir(exist_ok=True)
    for f in ("slurm.conf", "gres.conf"):
        target = Path("/etc/slurm") / f
        if (conf.parent / f).exists() and target.resolve() != (conf.parent / f).resolve():
            target.unlink(missing_ok=True)
            target.symlink_to(conf.parent / f)
    plugin = subprocess.run([str(BIN / "python"), "-c",
                             "import importlib.metadata as m; print(m.version('snakemake-executor-plugin-slurm'))"],
                            capture_output=True, text=True).stdout.strip()
    smk = sh([str(BIN / "snakemake"), "--version"], ROOT)[1].strip()
    slurm = sh(["sbatch", "--version"], ROOT)[1].strip()
    print(f"{slurm}; snakemake {smk} with snakemake-executor-plugin-slurm {plugin}; pipe {a.pipe}", flush=True)

    results = []
    binary = os.path.abspath(a.pipe)
    for n in map(int, a.sizes.split(",")):
        for run in range(a.runs):
            for tool in a.tools.split(","):
                wait_queue_empty()
                work = Path(tempfile.mkdtemp(prefix=f"pipe-bench-slurm-{n}-"))
                d = work / tool
                start, took = run_pipe(d, n, binary) if tool == "pipe" else run_snakemake(d, n)
                print(f"N={n} {tool}: {took:.1f} s wall", flush=True)
                jobs = slurm_jobs(d)
                expected = n + 2 if tool == "pipe" else 2 * n + 2
                if len(jobs) != expected:
                    sys.exit(f"N={n} {tool}: {len(jobs)} Slurm jobs, expected {expected} (Slurm "
                             "forgets an ended job after MinJobAge, 600 s on the test cluster)")
                if tool == "pipe":
                    runs = [json.loads(l) for l in (d / "cache" / "log" / "runs.jsonl").read_text().splitlines()]
                    built = {r["stage"] for r in runs if r.get("slurm_job") and r["outcome"] == "built"}
                    if len(built) != 2 * n + 2:
                        sys.exit(f"N={n} pipe: {len(built)} stages built by Slurm jobs, expected {2 * n + 2}")
                bad = [j["JobId"] for j in jobs if j.get("JobState") != "COMPLETED"]
                if bad:
                    sys.exit(f"N={n} {tool}: jobs not COMPLETED: {bad}")
                last = max(when(j["EndTime"]) for j in jobs) - start
                lag = lags(tool, jobs)
                row = {"n": n, "run": run, "tool": tool, "jobs": len(jobs), "wall_s": round(took, 2),
                       "last_job_s": round(last, 1), "lag_median_s": statistics.median(lag),
                       "lag_max_s": max(lag)}
                results.append(row)
                print(json.dumps(row), flush=True)
                shutil.rmtree(work)

    print()
    print("| N (jobs) | tool | wall | start → last job ended | lag, median | lag, max |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['n']} ({r['jobs']}) | {r['tool']} | {r['wall_s']:.1f} s | {r['last_job_s']:.0f} s "
              f"| {r['lag_median_s']:.0f} s | {r['lag_max_s']:.0f} s |")
    for n in sorted({r["n"] for r in results}):
        wall = {t: statistics.median(r["wall_s"] for r in results if r["n"] == n and r["tool"] == t)
                for t in a.tools.split(",")}
        if len(wall) == 2:
            print(f"N = {n}: pipe {wall['snakemake'] / wall['pipe']:.1f}x faster end to end (median wall)")
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
