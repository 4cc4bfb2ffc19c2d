"""A training script of one's own in a pipe study: a small PyTorch MLP on the dataset pipe's
`normalize` stage made, writing the three files pipe reads a run from (README: "Your own
training script"): metrics.jsonl (one line per epoch), summary.json and evaluation.json, plus
volatile/timing.json (wall times: not part of what anything downstream keys on).

pipe runs it in the stage's empty output folder; it reads its hyperparameters from the
environment the stage's `env` sets (varied like a train stage's fields) and the seed from
PIPE_SEED (what `seeds: N` replicates). Same seed, same bytes: one thread, no clock in the
three files.
"""

import copy
import json
import math
import os
import time

import numpy as np
import torch
from torch import nn


def env(name, default):
    return type(default)(os.environ.get(name, default))


LR = env("LR", 0.01)
MOMENTUM = env("MOMENTUM", 0.9)
HIDDEN = env("HIDDEN", 128)
EPOCHS = env("EPOCHS", 5)
BATCH = env("BATCH", 64)
SEED = env("PIPE_SEED", 0)
DATA = os.environ["PIPE_INPUT_0"]  # the normalize stage's output folder


def load(split):
    """A split as pipe's train stage sees it: x * scale[c] + shift[c] (meta.json)."""
    x = np.load(os.path.join(DATA, f"{split}_x.npy")).astype(np.float32)
    y = np.load(os.path.join(DATA, f"{split}_y.npy")).astype(np.int64)
    scale = np.array(META["scale"], np.float32).reshape(1, 3, 1, 1)
    shift = np.array(META["shift"], np.float32).reshape(1, 3, 1, 1)
    return torch.from_numpy(x * scale + shift).flatten(1), torch.from_numpy(y)


@torch.no_grad()
def scores(model, x, y):
    """Loss, accuracy, per-class accuracy and confusion[true][predicted], as evaluate writes them."""
    model.eval()
    logits = model(x)
    model.train()
    predicted = logits.argmax(1)
    k = len(META["classes"])
    confusion = [[0] * k for _ in range(k)]
    for t, p in zip(y.tolist(), predicted.tolist()):
        confusion[t][p] += 1
    return {
        "loss": nn.functional.cross_entropy(logits, y).item(),
        "accuracy": (predicted == y).float().mean().item(),
        "per_class_accuracy": [row[i] / max(1, sum(row)) for i, row in enumerate(confusion)],
        "confusion": confusion,
    }


def write(name, value):
    os.makedirs(os.path.dirname(name) or ".", exist_ok=True)
    with open(name, "w") as f:
        json.dump(value, f, indent=2)


META = json.load(open(os.path.join(DATA, "meta.json")))
torch.manual_seed(SEED)
torch.set_num_threads(1)
x, y = load("train")
vx, vy = load("validation")
tx, ty = load("test")
model = nn.Sequential(nn.Linear(x.shape[1], HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, len(META["classes"])))
opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
order = torch.Generator().manual_seed(SEED)

metrics, seconds, diverged, best, best_epoch = [], [], None, None, None
started = time.time()
for epoch in range(1, EPOCHS + 1):
    t0 = time.perf_counter()
    loss_sum, correct = 0.0, 0
    for idx in torch.randperm(len(y), generator=order).split(BATCH):
        logits = model(x[idx])
        loss = nn.functional.cross_entropy(logits, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_sum += loss.item() * len(idx)
        correct += (logits.argmax(1) == y[idx]).sum().item()
    val = scores(model, vx, vy)
    seconds.append(time.perf_counter() - t0)
    m = {
        "epoch": epoch,
        "train_loss": loss_sum / len(y),
        "train_acc": correct / len(y),
        "val_loss": val["loss"],
        "val_acc": val["accuracy"],
        "lr": LR,
    }
    if not math.isfinite(m["train_loss"]):
        diverged = epoch  # JSON has no NaN: the epoch is recorded as where it diverged
        break
    metrics.append(m)
    if best is None or m["val_acc"] > metrics[best_epoch - 1]["val_acc"]:
        best, best_epoch = copy.deepcopy(model.state_dict()), epoch

with open("metrics.jsonl", "w") as f:
    for m in metrics:
        f.write(json.dumps(m) + "\n")
final = scores(model, tx, ty)
if best is not None:
    model.load_state_dict(best)
write("evaluation.json", {
    "family": "torch-mlp",
    "classes": META["classes"],
    "test_images": len(ty),
    "epochs_run": len(metrics),
    "diverged_at_epoch": diverged,
    "best_epoch": best_epoch,
    "final": final,
    "best": scores(model, tx, ty),
})
write("summary.json", {
    "family": "torch-mlp",
    "parameters": sum(p.numel() for p in model.parameters()),
    "backend": f"torch-{torch.__version__}-cpu",
    "epochs_run": len(metrics),
    "diverged_at_epoch": diverged,
    "best_epoch": best_epoch,
    "best_val_acc": metrics[best_epoch - 1]["val_acc"] if best_epoch else None,
    "seed": SEED,
    "data_sizes": META["sizes"],
    "scaling": META["scaling"],
})
write("volatile/timing.json", {
    "started_unix": started,
    "epoch_seconds": seconds,
    "train_images_per_second": len(y) * len(metrics) / max(sum(seconds), 1e-9),
    "resumed_from_epoch": None,
})
