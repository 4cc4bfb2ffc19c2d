"""Writes reports/quick/README.md: an index of the quick studies' reports, from the reports.

    python3 bench/report_index.py

One row per report: family, the hyperparameter studied, the base model's best validation
accuracy, the best variant, and how many variants and seeds. Read from each report's
Results table, so it says only what the reports say.
"""

import re
from pathlib import Path

QUICK = Path(__file__).resolve().parent.parent / "reports" / "quick"
FAMILIES = {"": "linear", "mlp": "mlp", "convnet": "convnet", "resnet": "resnet",
            "highway": "highway", "rnn": "rnn"}


def results(md):
    lines = md.splitlines()
    start = lines.index("## Results")
    rows = []
    for l in lines[start + 1:]:
        if l.startswith("|"):
            rows.append(l)
        elif rows:
            break
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    body = [[c.strip() for c in r.strip("|").split("|")] for r in rows[2:]]
    return header, body


def acc(cell):
    m = re.match(r"([0-9.]+)%", cell)
    return float(m.group(1)) if m else None


def main():
    out = ["# The quick studies' reports", "",
           "Every report under `reports/quick/`, built from an empty cache by "
           "`pipe build $(pipe list --json | …reports/quick…)` on the CIFAR-10 sample (5,170 "
           "training images, 1,000 of them for validation; 1,017 test images) on two CPU cores "
           "(time: docs/BENCHMARKS.md). Quick studies are small and short, so accuracies are far "
           "below what the full studies reach; they show each hyperparameter's direction, not "
           "its size at 500 epochs. Written by `bench/report_index.py` from the reports' tables.",
           "", "Across families: [conclusions.md](conclusions.md) gathers every study below into "
           "matrices of effects (hyperparameter × family), heatmaps, the classic claims checked "
           "per family, and the hyperparameters ranked by their effect on accuracy.",
           "", "| family | study | base: best val acc | best variant: best val acc | variants | seeds | status |",
           "|---|---|---|---|---|---|---|"]
    order = list(FAMILIES)
    paths = sorted(QUICK.rglob("*.md"), key=lambda p: (
        order.index("" if p.parent == QUICK else p.parent.name) if (p.parent == QUICK or p.parent.name in FAMILIES) else 99,
        p.name))
    for md_path in paths:
        if md_path.name in ("README.md", "conclusions.md") or md_path.parent.name not in FAMILIES and md_path.parent != QUICK:
            continue
        rel = md_path.relative_to(QUICK)
        family = FAMILIES["" if md_path.parent == QUICK else md_path.parent.name]
        text = md_path.read_text()
        header, body = results(text)
        col = header.index("best val acc")
        status = header.index("status") if "status" in header else None
        seeds = header.index("seeds") if "seeds" in header else None
        base = next(r for r in body if r[0] == "base")
        learned = [r for r in body if status is None or not "failed" in r[status]]
        best = max(learned or body, key=lambda r: acc(r[col]) or -1)
        failed = [(r[0], r[status]) for r in body
                  if status is not None and not r[status].startswith("ok")]
        study = md_path.stem.replace("_", " ")
        name = best[0] if len(best[0]) <= 40 else best[0][:37] + "…"
        out.append(
            f"| {family} | [{study}]({rel.as_posix()}) | {base[col]} | "
            f"`{name}`: {best[col]} | {len(body)} | {base[seeds] if seeds is not None else 1} | "
            f"{'all learned' if not failed else '; '.join(f'`{f}`: {st}' for f, st in failed)} |")
    out.append("")
    (QUICK / "README.md").write_text("\n".join(out))
    print(f"{sum(l.startswith('| ') for l in out) - 1} reports indexed")


if __name__ == "__main__":
    main()
