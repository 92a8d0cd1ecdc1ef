"""A run's history: the per-evaluation logs Keras's `CSVLogger` writes, read back, and their plot."""

import csv
import os

from keras_textgen import io_utils
from keras_textgen import model as model_lib

def read_history(csv_path):
    """Per-epoch logs from the CSV history; a resumed epoch's last row wins."""
    if not os.path.exists(csv_path):
        return {}
    rows = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                rows[int(row["epoch"])] = {k: float(v) for k, v in row.items() if k != "epoch" and v not in ("", None)}
            except (KeyError, ValueError, TypeError):
                continue  # a damaged row
    history = {"epoch": [e + 1 for e in sorted(rows)]}
    for e in sorted(rows):
        for k, v in rows[e].items():
            history.setdefault(k, []).append(v)
    return history


def plot_history(history, png_path):
    """Writes the train/validation loss curves (bits per token) as a PNG."""
    # A `Figure` of its own, not pyplot: no global backend switch or figure registry in the caller's process
    # (a notebook keeps its backend), and pyplot's import is left out of every `train`.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    for key, label in (("loss", "train"), ("val_loss", "validation")):
        if history.get(key):
            ax.plot(history["epoch"], [model_lib.bits(v) for v in history[key]], marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("bits per token")
    ax.set_title("keras_textgen training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with io_utils.atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png")
