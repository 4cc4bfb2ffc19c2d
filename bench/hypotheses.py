"""Which of the seed study's hypotheses the quick reports answer with a test, per family.

    python3 bench/hypotheses.py [reports/quick]

Read from each report's claims.json (the claim records its sentences are rendered from).
A hypothesis is answered with a test when every figure it names has a tested claim
(Welch over seeds, Holm-adjusted) in the comparison it needs; the verdict is then
supported / contradicted / not significant from those claims' verdicts. "Batch 32 is the
slowest per epoch" is about wall time, which the reports show and never test.
"""

import json
import sys
from pathlib import Path

ROOT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "reports" / "quick"
FAMILIES = {"linear": ROOT, "mlp": ROOT / "mlp", "convnet": ROOT / "convnet",
            "resnet": ROOT / "resnet", "highway": ROOT / "highway", "rnn": ROOT / "rnn"}


def comparisons(family, study):
    f = FAMILIES[family] / study / "claims.json"
    if not f.exists():
        return None
    return json.loads(f.read_text())["comparisons"]


def claim(c, kind):
    return next((x for x in c["claims"] if x["kind"] == kind), None)


def number(v):
    try:
        return float(v)
    except ValueError:
        return None


def judge(cmps, want):
    """want: [(kind, expected verdict)] over the comparisons given; returns a verdict."""
    tested, verdicts = True, []
    for c in cmps:
        for kind, expect in want:
            x = claim(c, kind)
            if x is None or x["p"] is None:
                tested = False
                continue
            if x["verdict"] in ("higher", "lower"):
                verdicts.append("supported" if x["verdict"] == expect else "contradicted")
            else:
                verdicts.append("not significant")
    if not cmps or not tested:
        return "not tested"
    if all(v == "supported" for v in verdicts):
        return "supported"
    if "contradicted" in verdicts:
        return "contradicted" if "supported" not in verdicts else "mixed"
    return "not significant" if "supported" not in verdicts else "partly supported"


def main():
    rows = []
    for fam in FAMILIES:
        out = {}
        lr = comparisons(fam, "learning_rate")
        if lr is not None:
            lower = [c for c in lr if number(c["value"]) is not None and number(c["value"]) < number(c["base_value"])]
            # Smoother = lower epoch-to-epoch spread; slower = more epochs to 90% of the best.
            out["smaller lr: smoother, slower"] = judge(lower, [("smoothness", "lower"), ("speed", "higher")])
        mom = comparisons(fam, "momentum")
        if mom is not None:
            higher = [c for c in mom if number(c["value"]) is not None and number(c["value"]) > number(c["base_value"])]
            out["high momentum: faster, overfits earlier"] = judge(higher, [("speed", "lower"), ("onset", "lower")])
        if fam == "linear":
            ini = comparisons(fam, "initializer")
            if ini is not None:
                v = judge(ini, [("accuracy", "none")])
                out["initializer does not matter (linear)"] = {"not significant": "supported", "contradicted": "contradicted"}.get(v, v)
        act = comparisons(fam, "activation")
        if act is not None:
            pair = [c for c in act if {c["base_value"], c["value"]} == {"Relu", "Tanh"}]
            if pair:
                relu_is_base = pair[0]["base_value"] == "Relu"
                # As variant-vs-base verdicts: Tanh against a ReLU base is lower / later / faster.
                want = ([("accuracy", "lower"), ("onset", "higher"), ("speed", "lower")] if relu_is_base
                        else [("accuracy", "higher"), ("onset", "lower"), ("speed", "higher")])
                out["ReLU beats tanh, overfits earlier, slower"] = judge(pair, want)
            else:
                out["ReLU beats tanh, overfits earlier, slower"] = "not studied"
        bs = comparisons(fam, "batch_size")
        if bs is not None:
            base128 = bs and bs[0]["base_value"] == "128"
            if base128:
                out["batch 128 generalises best"] = judge(bs, [("accuracy", "lower")])
            else:
                out["batch 128 generalises best"] = "not tested (128 is not the base)"
        rows.append((fam, out))
    for fam, out in rows:
        answered = sum(1 for v in out.values() if not v.startswith("not tested") and v != "not studied")
        print(f"{fam}: {answered} of {len(out)} hypotheses answered with a test")
        for h, v in out.items():
            print(f"  {h}: {v}")


if __name__ == "__main__":
    main()
