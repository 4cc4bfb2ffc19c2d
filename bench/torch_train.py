"""The PyTorch side of the training benchmark: the same models as pipe's `train` stage, on the
very files pipe's `normalize` stage wrote, with the same optimizer, batch size and epochs.

Prints one JSON object: train images/s (training loop only, all epochs, as pipe's
summary.json counts them), per-epoch wall times (validation pass included, as pipe's
metrics.jsonl counts them) and the final model's test accuracy.

    python bench/torch_train.py --data DIR --family mlp --epochs 2 --batch 256 --threads 2
"""

import argparse
import json
import math
import os
import time

import numpy as np
import torch
from torch import nn


def glorot(module):
    """pipe's defaults: Glorot-uniform kernels, zero biases (Keras'). Recurrent weights are
    initialized gate by gate, as Keras and burn do."""
    for name, p in module.named_parameters():
        if name.endswith("bias"):
            nn.init.zeros_(p)
        elif name.startswith("lstm.weight"):
            for gate in p.data.chunk(4, 0):
                nn.init.xavier_uniform_(gate)
        elif p.dim() >= 2:
            nn.init.xavier_uniform_(p)


class Perceptron(nn.Sequential):
    def __init__(self, hidden, activation=nn.ReLU):
        super().__init__(nn.Flatten(), nn.Linear(3072, hidden), activation(), nn.Linear(hidden, 10))


class Mlp(nn.Sequential):
    def __init__(self, widths=(512, 512)):
        layers, w = [nn.Flatten()], 3072
        for h in widths:
            layers += [nn.Linear(w, h), nn.ReLU()]
            w = h
        super().__init__(*layers, nn.Linear(w, 10))


class ConvNet(nn.Sequential):
    """pipe's ConvNet() default: two 3×3 'same' conv blocks (32, 64) with 2×2 max pooling,
    dense 128, head."""

    def __init__(self):
        super().__init__(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 8 * 8, 128), nn.ReLU(), nn.Linear(128, 10),
        )


class Block(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.project = None
        if stride != 1 or c_in != c_out:
            self.project = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return torch.relu(h + (x if self.project is None else self.project(x)))


class ResNet(nn.Module):
    """CIFAR ResNet (6n + 2), width 16, as pipe's ResNet(depth: 20)."""

    def __init__(self, depth=20, width=16):
        super().__init__()
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        blocks, c = [], width
        for stage in range(3):
            c_out = width << stage
            for i in range(n):
                blocks.append(Block(c, c_out, 2 if stage > 0 and i == 0 else 1))
                c = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c, 10)

    def forward(self, x):
        h = self.blocks(self.stem(x))
        return self.head(h.mean(dim=(2, 3)))


class Highway(nn.Module):
    def __init__(self, depth=10, width=512, gate_bias=-2.0):
        super().__init__()
        self.input = nn.Linear(3072, width)
        self.transform = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.gate = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.head = nn.Linear(width, 10)
        self.gate_bias = gate_bias

    def forward(self, x):
        h = torch.relu(self.input(x.flatten(1)))
        for t, g in zip(self.transform, self.gate):
            gate = torch.sigmoid(g(h))
            h = torch.relu(t(h)) * gate + h * (1 - gate)
        return self.head(h)


class Lstm(nn.Module):
    """Reads the 32 image rows as a sequence of 96-d vectors (R, G, B rows side by side),
    as pipe's Rnn(read: Rows)."""

    def __init__(self, hidden=128):
        super().__init__()
        self.lstm = nn.LSTM(96, hidden, batch_first=True)
        # pipe's LSTM has one bias per gate (Keras'); PyTorch's second one stays at zero.
        for name, p in self.lstm.named_parameters():
            if name.startswith("bias_hh"):
                p.requires_grad_(False)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x):
        seq = x.permute(0, 2, 1, 3).reshape(x.shape[0], 32, 96)
        out, _ = self.lstm(seq)
        return self.head(out[:, -1])


FAMILIES = {
    "linear": lambda: nn.Sequential(nn.Flatten(), nn.Linear(3072, 10)),
    "perceptron": lambda: Perceptron(3072),
    # The seed study's base model: one tanh hidden layer of 3072 units.
    "seed": lambda: Perceptron(3072, nn.Tanh),
    "mlp": Mlp,
    "convnet": ConvNet,
    "resnet20": ResNet,
    "highway": Highway,
    "lstm": Lstm,
}


def load(data, split, device):
    """A split of pipe's normalized dataset as float inputs: x * scale[c] + shift[c]."""
    meta = json.load(open(os.path.join(data, "meta.json")))
    x = np.load(os.path.join(data, f"{split}_x.npy")).astype(np.float32)
    scale = np.array(meta["scale"], np.float32).reshape(1, 3, 1, 1)
    shift = np.array(meta["shift"], np.float32).reshape(1, 3, 1, 1)
    y = np.load(os.path.join(data, f"{split}_y.npy")).astype(np.int64)
    return torch.from_numpy(x * scale + shift).to(device), torch.from_numpy(y).to(device)


@torch.no_grad()
def accuracy(model, x, y, batch):
    model.eval()
    correct = sum(
        (model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum().item()
        for i in range(0, len(y), batch)
    )
    model.train()
    return correct / len(y)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="a pipe normalize output folder")
    ap.add_argument("--family", required=True, choices=sorted(FAMILIES))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    if dev.type == "cuda":
        # Several families may run in one process (bench/gpu.py): each its own peak.
        torch.cuda.reset_peak_memory_stats()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    x, y = load(a.data, "train", dev)
    vx, vy = load(a.data, "validation", dev)
    tx, ty = load(a.data, "test", dev)
    model = FAMILIES[a.family]()
    glorot(model)
    if a.family == "highway":
        for g in model.gate:
            nn.init.constant_(g.bias, model.gate_bias)
    model.to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(a.seed)
    train_seconds, epochs = 0.0, []
    for _ in range(a.epochs):
        sync()
        start = time.perf_counter()
        order = torch.randperm(len(y), generator=gen).to(dev)
        for i in range(0, len(y), a.batch):
            idx = order[i : i + a.batch]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync()
        train_seconds += time.perf_counter() - start
        val_acc = accuracy(model, vx, vy, 1000)
        epochs.append({"seconds": time.perf_counter() - start, "train_loss": loss.item(), "val_acc": val_acc})
    print(json.dumps({
        "family": a.family,
        "torch": torch.__version__,
        "device": a.device,
        "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "train_images_per_second": a.epochs * len(y) / train_seconds,
        "epochs": epochs,
        "test_accuracy": accuracy(model, tx, ty, 1000),
        "finite": math.isfinite(loss.item()),
        # What PyTorch's caching allocator held at most (the CUDA context is not counted).
        "peak_gpu_reserved_mib": torch.cuda.max_memory_reserved() / 2**20 if dev.type == "cuda" else None,
    }))


if __name__ == "__main__":
    main()
