"""Kill pipe at random points of a training and resume: is every output bit-identical?

    cargo build --release
    python3 bench/killpoints.py --points 20 [--seed 1] [--corrupt 0.5]

A temporary project trains one small MLP (12 epochs, the config below) on the
genuine CIFAR-10 sample (../shared/data/cifar-10-sample). One uninterrupted build gives the
reference outputs. Then, for each kill point: a fresh cache holding only the normalized data,
`pipe build` started and sent SIGKILL after a random delay (uniform over the reference
training's duration), the cache checked (no entry for the training unless it finished, no
object whose bytes differ from its name), the build run again to the end, and every output
file compared byte for byte with the reference (`volatile/`, wall-clock times, aside).
With `--corrupt P`, after a kill that left a checkpoint, with probability P one byte of one
of its files is flipped in place (size and mtime kept, as a disk error would): `verify` must
then name the damaged checkpoint, and the build must discard it, train from the start and
still give the reference outputs.
Prints one line per point and a summary; exits 1 on any difference.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIPE = ROOT / "target" / "release" / "pipe"
SAMPLE = ROOT.parent / "shared" / "data" / "cifar-10-sample"

PIPELINE = """Pipeline(stages: [
    (name: "cifar10", kind: "download", config: (source: Local("%s"))),
    (name: "data", kind: "normalize", inputs: ["cifar10"], config: (validation: 1000, seed: 0)),
    (name: "mlp", kind: "train", inputs: ["data"], config: (model: Mlp(hidden: [256, 128]), epochs: 12, batch_size: 64, optimizer: (lr: 0.01, momentum: 0.9), seed: 42)),
])
""" % SAMPLE


def pipe(project, *args, **kw):
    return subprocess.run([str(PIPE), *args], cwd=project, capture_output=True, text=True, **kw)


def outputs(project):
    """Every file of the training's entry: path -> sha256 of its bytes (volatile/ aside)."""
    st = json.loads(pipe(project, "status", "--json", "k:mlp").stdout)
    key = [r for r in st if r["stage"] == "k:mlp"][0]["key"]
    entry = json.loads((project / "cache" / "entries" / key[:2] / f"{key}.json").read_text())
    out = {}
    for o in entry["outputs"]:
        if o["path"].startswith("volatile/"):
            continue
        obj = project / "cache" / "objects" / o["hash"][:2] / o["hash"]
        out[o["path"]] = hashlib.sha256(obj.read_bytes()).hexdigest()
    return out


def flip_a_checkpoint_byte(project, rng):
    """Flips one byte of one checkpoint file, keeping its size and mtime; the file's name,
    or None when no checkpoint was left."""
    files = [f for f in (project / "cache" / "scratch").glob("*/checkpoint/*")
             if f.is_file() and f.name != "SEAL.json" and f.stat().st_size > 0]
    if not any((f.parent / "SEAL.json").exists() for f in files):
        return None
    f = rng.choice(sorted(files))
    st = f.stat()
    f.chmod(0o644)
    with open(f, "r+b") as h:
        at = rng.randrange(st.st_size)
        h.seek(at)
        b = h.read(1)[0]
        h.seek(at)
        h.write(bytes([b ^ 0x20]))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    f.chmod(st.st_mode)
    return f.name


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--corrupt", type=float, default=0.0,
                    help="chance of damaging the checkpoint a kill left")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    base = Path(tempfile.mkdtemp(prefix="pipe-kill-"))
    ref = base / "ref"
    (ref / "pipelines").mkdir(parents=True)
    (ref / "pipelines" / "k.ron").write_text(PIPELINE)
    assert pipe(ref, "build", "k:data").returncode == 0
    data_cache = base / "data-cache"
    shutil.copytree(ref / "cache", data_cache)
    t0 = time.time()
    r = pipe(ref, "build", "k:mlp")
    duration = time.time() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    want = outputs(ref)
    print(f"reference: {len(want)} files, training took {duration:.1f} s")
    bad = 0
    counts = {"resumed": 0, "restarted": 0, "corrupted": 0}
    for i in range(a.points):
        p = base / f"p{i}"
        (p / "pipelines").mkdir(parents=True)
        (p / "pipelines" / "k.ron").write_text(PIPELINE)
        shutil.copytree(data_cache, p / "cache")
        delay = rng.uniform(0.05, duration)
        child = subprocess.Popen([str(PIPE), "build", "k:mlp"], cwd=p, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        time.sleep(delay)
        finished = child.poll() is not None
        if not finished:
            child.send_signal(signal.SIGKILL)
        child.wait()
        status = json.loads(pipe(p, "status", "--json", "k:mlp").stdout)
        state = [r for r in status if r["stage"] == "k:mlp"][0]["state"]
        flipped = None
        if not finished and rng.random() < a.corrupt:
            flipped = flip_a_checkpoint_byte(p, rng)
        v = pipe(p, "verify")
        damaged = v.returncode != 0
        r = pipe(p, "build", "k:mlp")
        resumed = "resumed after epoch" in r.stdout
        discarded = "checkpoint discarded" in r.stdout + r.stderr
        got = outputs(p) if r.returncode == 0 else {}
        same = got == want
        clean_after = pipe(p, "verify").returncode == 0
        # A damaged checkpoint: verify names it, the build discards it and restarts.
        ok = (same and clean_after and damaged == bool(flipped) and discarded == bool(flipped)
              and not (flipped and resumed) and (state == "stale" or finished))
        bad += not ok
        counts["resumed" if resumed else "restarted"] += 1
        counts["corrupted"] += bool(flipped)
        print(f"point {i:2d}: killed at {delay:5.1f} s ({'after the end' if finished else state}), "
              f"{'flipped a byte of ' + flipped + ', ' if flipped else ''}"
              f"verify {'damaged' if damaged else 'clean'}, "
              f"{'discarded, ' if discarded else ''}{'resumed' if resumed else 'restarted'}, "
              f"outputs {'identical' if same else 'DIFFER: ' + str(sorted(k for k in want if got.get(k) != want[k]))}"
              f"{'' if clean_after else ', verify NOT clean after'}")
        shutil.rmtree(p)
    print(f"{a.points} kill points ({counts['resumed']} resumed, {counts['restarted']} restarted, "
          f"{counts['corrupted']} with a damaged checkpoint), {bad} with a difference or a damaged cache")
    shutil.rmtree(base)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
