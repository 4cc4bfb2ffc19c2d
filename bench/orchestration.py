"""Orchestration overhead: pipe against DVC and Snakemake on the same generated DAG.

    bench/setup.sh                                   # once: peers into bench/.venv
    bench/.venv/bin/python bench/orchestration.py    # N = 10, 100, 500
    bench/.venv/bin/python bench/orchestration.py --sizes 500 --peers snakemake

For each N, the same DAG is written for each tool: a dataset stage, N training variants
(each its own learning rate), one evaluation per variant and a report over all of them:
2N + 2 stages of trivial shell bodies (`echo`, `cat`), so what is timed is the tool. Then:

  (c) full first build, one job at a time (pipe -j1, snakemake -c1, dvc repro);
  (a) no-op: everything fresh (pipe build / pipe status, dvc repro / dvc status,
      snakemake -c1 / snakemake -n), median of --runs;
  (b) the decision after editing one variant's learning rate (pipe status, dvc status,
      snakemake -n), median of --runs; then each tool rebuilds and the stages it actually
      ran are compared: all three must rerun exactly that variant's train and evaluate
      stages and the report, or the script fails.

Prints a markdown table of medians and pipe's speed-up over each peer; gates nothing.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def lr(i):
    return f"{(i + 1) * 1e-4:.6f}"


EDITED_LR = "0.900000"


def sh(cmd, cwd, env=None):
    """Runs cmd; returns (seconds, stdout + stderr). Fails the benchmark on a non-zero exit."""
    start = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"{cmd} in {cwd} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return took, p.stdout + p.stderr


class Pipe:
    name = "pipe"

    def __init__(self, d: Path, n: int, binary: str):
        self.d, self.n, self.bin = d, n, binary
        (d / "pipelines").mkdir(parents=True)
        self.write(edited=None)

    def write(self, edited):
        self.edited = edited
        lrs = [EDITED_LR if i == edited else lr(i) for i in range(self.n)]
        vary = ", ".join(f'"{v}"' for v in lrs[1:])
        (self.d / "pipelines" / "bench.ron").write_text(f"""Pipeline(stages: [
    (name: "data", kind: "command", config: (run: "echo data > data.txt")),
    (name: "train", kind: "command", inputs: ["data"],
     config: (run: "cat $PIPE_INPUT_0/data.txt > model.txt; echo $LR >> model.txt", env: {{"LR": "{lrs[0]}"}}),
     vary: {{"env.LR": [{vary}]}}),
    (name: "eval", kind: "command", inputs: ["train"], config: (run: "cat $PIPE_INPUT_0/model.txt > score.txt")),
    (name: "report", kind: "command_gather", inputs: ["eval"], target: "reports/bench.md",
     config: (run: "echo \\"$PIPE_INPUTS\\" | sed 's|$|/score.txt|' | xargs cat > bench.md")),
])
""")

    def build(self):
        return sh([self.bin, "build", "-j1", "reports/bench.md"], self.d)[0]

    def noop(self):
        return {"pipe build": sh([self.bin, "build", "reports/bench.md"], self.d)[0],
                "pipe status": sh([self.bin, "status", "reports/bench.md"], self.d)[0]}

    def decide(self):
        """`pipe status`, the command a user runs (as `dvc status`, `snakemake -n`): one line
        per stage, `stale  ID: reasons` for those that would run."""
        took, out = sh([self.bin, "status", "reports/bench.md"], self.d)
        return took, self.ids(re.findall(r"^stale  (\S+?): ", out, re.M))

    def rebuild(self):
        _, out = sh([self.bin, "build", "-j1", "reports/bench.md"], self.d)
        return self.ids(re.findall(r"^built\s+(\S+)", out, re.M))

    def ids(self, stages):
        """pipe's stage ids as the shared names: `bench:train` is the base (variant 0),
        `bench:train[env.LR="0.000200"]` the variant with that learning rate."""
        values = {(EDITED_LR if i == self.edited else lr(i)): i for i in range(self.n)}
        out = set()
        for s in stages:
            m = re.match(r'bench:(\w+)(?:\[env\.LR="(.*)"\])?$', s)
            stage, value = m.group(1), m.group(2)
            if stage in ("train", "eval"):
                out.add(f"{stage}_{values[value] if value else 0}")
            else:
                out.add(stage)
        return out


class Dvc:
    name = "dvc"

    def __init__(self, d: Path, n: int):
        self.d, self.n = d, n
        d.mkdir(parents=True)
        self.env = dict(os.environ, DVC_NO_ANALYTICS="1")
        sh([str(BIN / "dvc"), "init", "--no-scm", "-q"], d, self.env)
        stages = ["stages:", "  data:", "    cmd: echo data > data.txt", "    outs: [data.txt]"]
        for i in range(n):
            stages += [f"  train_{i}:", f"    cmd: cat data.txt > models/{i}.txt && echo ${{lr.v{i}}} >> models/{i}.txt",
                       "    deps: [data.txt]", f"    params: [lr.v{i}]", f"    outs: [models/{i}.txt]"]
            stages += [f"  eval_{i}:", f"    cmd: cat models/{i}.txt > scores/{i}.txt",
                       f"    deps: [models/{i}.txt]", f"    outs: [scores/{i}.txt]"]
        scores = " ".join(f"scores/{i}.txt" for i in range(n))
        stages += ["  report:", f"    cmd: cat {scores} > report.md",
                   "    deps: [" + ", ".join(f"scores/{i}.txt" for i in range(n)) + "]", "    outs: [report.md]"]
        (d / "dvc.yaml").write_text("\n".join(stages) + "\n")
        (d / "models").mkdir()
        (d / "scores").mkdir()
        self.write(edited=None)

    def write(self, edited):
        (self.d / "params.yaml").write_text(
            "lr:\n" + "".join(f"  v{i}: {EDITED_LR if i == edited else lr(i)}\n" for i in range(self.n)))

    def run(self, *args):
        return sh([str(BIN / "dvc"), *args], self.d, self.env)

    def build(self):
        return self.run("repro")[0]

    def noop(self):
        return {"dvc repro": self.run("repro")[0], "dvc status": self.run("status")[0]}

    def decide(self):
        took, out = self.run("status", "--json")
        return took, set(json.loads(out))

    def rebuild(self):
        _, out = self.run("repro")
        return set(re.findall(r"Running stage '([^']+)'", out))


class Snakemake:
    name = "snakemake"

    def __init__(self, d: Path, n: int):
        self.d, self.n = d, n
        d.mkdir(parents=True)
        (d / "Snakefile").write_text("""configfile: "config.yaml"
N = len(config["lr"])

rule report:
    input: expand("scores/{i}.txt", i=range(N))
    output: "report.md"
    shell: "cat {input} > {output}"

rule eval:
    input: "models/{i}.txt"
    output: "scores/{i}.txt"
    shell: "cat {input} > {output}"

rule train:
    input: "data.txt"
    output: "models/{i}.txt"
    params: lr=lambda w: config["lr"][int(w.i)]
    shell: "cat {input} > {output} && echo {params.lr} >> {output}"

rule data:
    output: "data.txt"
    shell: "echo data > {output}"
""")
        self.write(edited=None)

    def write(self, edited):
        (self.d / "config.yaml").write_text(
            "lr:\n" + "".join(f"  - {EDITED_LR if i == edited else lr(i)}\n" for i in range(self.n)))

    def run(self, *args):
        return sh([str(BIN / "snakemake"), *args], self.d)

    def build(self):
        return self.run("-c1")[0]

    def noop(self):
        return {"snakemake -c1": self.run("-c1")[0], "snakemake -n": self.run("-n")[0]}

    def jobs(self, out):
        """Jobs of a run or dry run: each is printed as `rule NAME:` with its `output:` line."""
        jobs = set()
        for rule, output in re.findall(r"rule (\w+):\n(?:    .*\n)*?    output: (\S+)", out):
            m = re.search(r"(\d+)\.txt$", output)
            jobs.add(f"{rule}_{m.group(1)}" if m and rule in ("train", "eval") else rule)
        return jobs

    def decide(self):
        took, out = self.run("-n")
        return took, self.jobs(out)

    def rebuild(self):
        _, out = self.run("-c1")
        return self.jobs(out)


def median_of(runs, f):
    samples = [f() for _ in range(runs)]
    return {k: statistics.median(s[k] for s in samples) for k in samples[0]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10,100,500")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--peers", default="dvc,snakemake",
                    help="peers to run against pipe (DVC's N = 500 first build alone takes ~23 min)")
    ap.add_argument("--pipe", default=str(ROOT / "target" / "release" / "pipe"))
    ap.add_argument("--out", help="write the results as JSON here")
    a = ap.parse_args()
    peers = [p for p in a.peers.split(",") if p]
    versions = []
    for tool in peers:
        if tool not in ("dvc", "snakemake"):
            sys.exit(f"unknown peer {tool}: choose from dvc, snakemake")
        if not (BIN / tool).exists():
            sys.exit(f"{BIN / tool} not found: run bench/setup.sh and use bench/.venv/bin/python")
        versions.append(f"{tool} {sh([str(BIN / tool), '--version'], ROOT)[1].strip()}")
    print(", ".join(versions + [f"pipe {a.pipe}"]), flush=True)

    results = []
    for n in map(int, a.sizes.split(",")):
        work = Path(tempfile.mkdtemp(prefix=f"pipe-bench-orch-{n}-"))
        tools = [Pipe(work / "pipe", n, os.path.abspath(a.pipe))]
        tools += [{"dvc": Dvc, "snakemake": Snakemake}[p](work / p, n) for p in peers]
        row = {"n": n, "stages": 2 * n + 2, "full": {}, "noop": {}, "decide": {}, "rerun": {}}
        for t in tools:
            row["full"][t.name] = t.build()
            print(f"N={n} {t.name}: full build {row['full'][t.name]:.2f} s", flush=True)
        for t in tools:
            row["noop"].update(median_of(a.runs, t.noop))
        edited = n // 2
        expected = {f"train_{edited}", f"eval_{edited}", "report"}
        for t in tools:
            t.write(edited)
            took = []
            for _ in range(a.runs):
                s, decided = t.decide()
                took.append(s)
            row["decide"][t.name] = statistics.median(took)
            ran = t.rebuild()
            row["rerun"][t.name] = {"decided": sorted(decided), "ran": sorted(ran)}
            if ran != expected:
                sys.exit(f"N={n}: {t.name} reran {sorted(ran)}, expected {sorted(expected)}")
        results.append(row)
        print(json.dumps(row), flush=True)
        shutil.rmtree(work)

    print()
    print("| N (stages) | measure | pipe | dvc | snakemake | pipe speed-up vs dvc | vs snakemake |")
    print("|---|---|---|---|---|---|---|")
    ms = lambda s: f"{s * 1000:,.1f} ms" if s < 10 else f"{s:,.1f} s"
    rows = [("full", "full first build (1 job)", "pipe", "dvc", "snakemake", "", ""),
            ("noop", "no-op build", "pipe build", "dvc repro", "snakemake -c1", " (repro)", " (-c1)"),
            ("noop", "no-op check", "pipe status", "dvc status", "snakemake -n", " (status)", " (-n)"),
            ("decide", "decision after one edit", "pipe", "dvc", "snakemake", " (status)", " (-n)")]
    for r in results:
        label = f"{r['n']} ({r['stages']})"
        for part, measure, pk, dk, sk, dn, sn in rows:
            m = r[part]
            cell = lambda k, note: f"{ms(m[k])}{note}" if k in m else "—"
            ratio = lambda k: f"{m[k] / m[pk]:.0f}x" if k in m else "—"
            print(f"| {label} | {measure} | {ms(m[pk])} | {cell(dk, dn)} | {cell(sk, sn)} | {ratio(dk)} | {ratio(sk)} |")
    print(f"\nAfter the edit, pipe and {', '.join(peers) or 'no peer'} each reran exactly: " + ", ".join(sorted(results[-1]["rerun"]["pipe"]["ran"])) +
          " (the edited variant's train and eval, and the report), at every N.")
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
