"""The text models' learning check: `cct-fast train --model text_cct_2 --dataset fortunes` (the
text recipe) against a TF-IDF + logistic-regression baseline on the same split, each with its
test accuracy and wall time; writes its block of RESULTS.md.

    python benchmarks/text_fortunes.py

Needs the Debian package fortunes (apt-get install fortunes).
"""

import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from results_file import write_block

COMMAND = ["cct-fast", "train", "--model", "text_cct_2", "--dataset", "fortunes"]


def baseline(dataset):
    """Word and bigram TF-IDF into multinomial logistic regression (scikit-learn)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    started = time.perf_counter()
    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
        LogisticRegression(C=10.0, max_iter=2000),
    )
    model.fit(dataset.train.texts, dataset.train.labels)
    accuracy = float((model.predict(dataset.test.texts) == dataset.test.labels).mean())
    return accuracy, time.perf_counter() - started


def main():
    from cct_fast.train.text_data import load_text_dataset

    dataset = load_text_dataset("fortunes")
    majority = np.bincount(dataset.test.labels).max() / len(dataset.test)
    tfidf_accuracy, tfidf_seconds = baseline(dataset)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        subprocess.run(
            [*COMMAND, "--out", str(Path(folder) / "run")], check=True, stdout=subprocess.DEVNULL
        )
        wall = time.perf_counter() - started
        with open(Path(folder) / "run" / "metrics.csv") as file:
            rows = list(csv.DictReader(file))
    accuracies = [float(row["test_accuracy"]) for row in rows]
    best = int(np.argmax(accuracies))
    body = "\n".join(
        [
            f"### Text: fortunes ({dataset.num_classes} categories, {len(dataset.train):,} "
            f"training and {len(dataset.test):,} test texts)\n",
            "| model | test accuracy | best (epoch) | wall |",
            "|---|---:|---:|---:|",
            f"| majority class | {100 * majority:.1f} % | | |",
            f"| TF-IDF (words and bigrams) + logistic regression | {100 * tfidf_accuracy:.1f} % "
            f"| | {tfidf_seconds:.1f} s |",
            f"| `{' '.join(COMMAND)}` ({len(rows)} epochs) | {100 * accuracies[-1]:.1f} % | "
            f"{100 * accuracies[best]:.1f} % ({best + 1}) | {wall:.0f} s |",
        ]
    )
    print(body)
    write_block("text-fortunes", "python benchmarks/text_fortunes.py", body)


if __name__ == "__main__":
    sys.exit(main())
