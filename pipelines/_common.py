"""Flags shared by the pipeline scripts (kept tiny on purpose: the scripts are the documentation)."""

import argparse


def parser(description, epochs=5, steps=None):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a few steps of a tiny model (smoke test)")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--steps-per-epoch", type=int, default=steps)
    p.add_argument("--out", default=None, help="where to save model.keras and vocab.json")
    return p
