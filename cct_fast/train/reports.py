"""What a run folder shows a person: ``metrics.csv`` and ``curves.png``, rewritten whole after
every epoch."""

from __future__ import annotations

import csv
import io

from cct_fast.base.files import atomic_output

METRICS = ("epoch", "learning_rate", "train_loss", "test_loss", "test_accuracy", "seconds")


def write_metrics(path, history):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRICS)
    writer.writeheader()
    writer.writerows(history)
    with atomic_output(path) as temporary:
        temporary.write_text(buffer.getvalue())


def plot_curves(path, history):
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        return  # the CSV holds the same numbers; matplotlib is optional
    epochs = [row["epoch"] for row in history]
    figure, (loss_axes, accuracy_axes) = pyplot.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot(epochs, [r["train_loss"] for r in history], label="train (augmented)")
    loss_axes.plot(epochs, [r["test_loss"] for r in history], label="test")
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    loss_axes.legend()
    accuracy_axes.plot(epochs, [r["test_accuracy"] for r in history])
    accuracy_axes.set(xlabel="epoch", ylabel="top-1", title="test accuracy")
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png", dpi=80)
    pyplot.close(figure)
