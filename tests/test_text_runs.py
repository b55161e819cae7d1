"""Text models through training runs, evaluation, prediction, ONNX export and the CLI."""

import json

import numpy as np
import pytest

import cct_fast
from cct_fast import train
from cct_fast.cli import main as cli
from cct_fast.data import image_data, text_data
from cct_fast.data.text_encoder import TextEncoder
from cct_fast.errors import DatasetError, ExportError, RunError
from cct_fast.export import load_onnx, to_onnx
from cct_fast.train.predict import predict
from cct_fast.train.run_folder import RECIPE

from helpers import QUICK_TEXT, relative_error, topic_csv


def test_a_text_run_learns_and_writes_its_encoder_and_classes(topic_run):
    run, _ = topic_run
    assert run.history[-1]["test_accuracy"] >= 0.9  # three classes: chance is 1/3
    card = json.loads((run.folder / "dataset.json").read_text())
    assert card["class_names"] == ["animals", "sport", "weather"] and "mean" not in card
    encoder = TextEncoder.load(run.folder / "encoder.json")
    assert encoder.seq_len == 16 and encoder.vocabulary == run.encoder.vocabulary
    assert run.model.config.vocab_size == encoder.vocab_size


def test_evaluate_and_predict_read_the_run_folder(topic_run):
    run, dataset = topic_run
    best = max(row["test_accuracy"] for row in run.history)
    assert train.evaluate(run.folder, dataset)["accuracy"] == pytest.approx(best)
    texts = ["the storm and rain today", "a cat and a dog", "the team score a goal"]
    ranked = predict(run.folder, texts, top=2)
    assert [classes[0][0] for classes in ranked] == ["weather", "animals", "sport"]
    for classes in ranked:
        assert len(classes) == 2 and classes[0][1] >= classes[1][1] > 0
    logits = np.asarray(run.model(run.encoder(texts)))
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert relative_error(np.asarray([c[0][1] for c in ranked]), probabilities.max(1)) <= 1e-5


def test_a_resumed_text_run_ends_where_an_uninterrupted_one_does(topic_run, tmp_path, monkeypatch):
    whole, dataset = topic_run
    calls = {"epochs": 0}
    original = train.Run._finish_epoch

    def stop_after_two(self):
        original(self)
        calls["epochs"] += 1
        if calls["epochs"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train.Run, "_finish_epoch", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        train.fit(out=tmp_path / "split", dataset=dataset, verbose=0, **QUICK_TEXT)
    monkeypatch.setattr(train.Run, "_finish_epoch", original)
    resumed = train.fit(out=tmp_path / "split", resume=True, verbose=0)
    assert [r["train_loss"] for r in resumed.history] == pytest.approx(
        [r["train_loss"] for r in whole.history], rel=1e-6
    )


def test_evaluation_refuses_other_classes_and_bare_text_weights(topic_run, tmp_path):
    run, _ = topic_run
    other = tmp_path / "other.csv"
    other.write_text("text,label\n" + "".join(f"word {i},{'xyz'[i % 3]}\n" for i in range(15)))
    with pytest.raises(RunError, match="trained on the classes"):
        train.evaluate(run.folder, f"csv:{other}")
    with pytest.raises(RunError, match="evaluate the run folder"):
        train.evaluate(run.folder / "best.weights.h5", "fortunes", model="text_cct_2")


def test_a_text_run_exports_to_onnx_with_its_encoder_in_front(topic_run, tmp_path, capsys):
    run, _ = topic_run
    path = tmp_path / "text.onnx"
    assert cli(["export", str(run.folder), "-o", str(path)]) == 0
    assert "inputs 'token_ids' int32 and 'mask' bool" in capsys.readouterr().out
    predictor = load_onnx(path, providers=["CPUExecutionProvider"])
    ids, mask = run.encoder(["a cat in the rain", "the coach of the team"])
    expected = run.model((ids, mask))
    assert relative_error(predictor.predict((ids.numpy(), mask.numpy())), expected) <= 1e-4
    with pytest.raises(TypeError, match=r"takes \(token_ids, mask\)"):
        predictor.predict(ids.numpy())
    with pytest.raises(ValueError, match=r"token_ids of shape \(batch, 16\)"):
        predictor.predict((ids.numpy()[:, :8], mask.numpy()[:, :8]))


@pytest.mark.parametrize("name", ["text_vit_2", "text_transformer_2"])
def test_text_models_export_in_float32_and_float16(name, tmp_path, rng):
    model = cct_fast.create_model(name, vocab_size=300, num_classes=5)
    for dtype in ("float32", "float16"):  # to_onnx checks each against Keras (1e-4, 1e-2)
        predictor = load_onnx(
            to_onnx(model, tmp_path / f"{dtype}.onnx", dtype=dtype), ["CPUExecutionProvider"]
        )
        ids = rng.integers(0, 300, (3, 64))
        mask = np.arange(64)[None] < np.array([[64], [10], [1]])
        assert predictor.predict((ids, mask)).shape == (3, 5)
    with pytest.raises(ExportError, match="text model: the fused graph"):
        to_onnx(model, tmp_path / "fused.onnx", optimize=True)
    assert not (tmp_path / "fused.onnx").exists()


def test_pretrained_vectors_fill_and_freeze_the_embedding_table(tmp_path):
    dataset = topic_csv(tmp_path / "topics.csv")
    vectors = {"cat": 0.5, "storm": -0.25}
    glove = tmp_path / "glove.txt"
    glove.write_text("".join(f"{w} {' '.join([str(v)] * 300)}\n" for w, v in vectors.items()))
    run = train.fit(
        out=tmp_path / "run",
        dataset=dataset,
        verbose=0,
        embeddings=str(glove),
        freeze_embeddings=True,
        **dict(QUICK_TEXT, epochs=1),
    )
    table = run.model.word_embedding.table
    assert not table.trainable
    for word, value in vectors.items():
        np.testing.assert_array_equal(table.numpy()[run.encoder.vocabulary.index(word)], value)


def test_the_cli_trains_predicts_and_refuses_bad_text_data(tmp_path, capsys, monkeypatch):
    dataset = topic_csv(tmp_path / "topics.csv", per_topic=10)
    out = tmp_path / "run"
    argv = ["train", "--model", "text_cct_2", "--dataset", dataset, "--epochs", "1"]
    reads = []
    read_csv = text_data._read_csv
    monkeypatch.setattr(text_data, "_read_csv", lambda path: reads.append(path) or read_csv(path))
    assert cli([*argv, "--seq-len", "16", "--seed", "3", "--out", str(out)]) == 0
    assert reads == [tmp_path / "topics.csv"]  # checked before TensorFlow, and read once
    recipe = json.loads((out / RECIPE).read_text())
    assert (recipe["seq_len"], recipe["seed"]) == (16, 3)
    assert "text_cct_2 on csv:" in capsys.readouterr().out
    assert cli(["predict", str(out), "a dog and a cow", "--top", "3"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("a dog and a cow: ") and line.count(",") == 2
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    bad_out = tmp_path / "bad"
    assert (
        cli(["train", "--model", "text_cct_2", "--dataset", f"csv:{empty}", "--out", str(bad_out)])
        == 2
    )
    assert "holds a header and no rows" in capsys.readouterr().err
    assert not (bad_out / "recipe.json").exists() and not (bad_out / "checkpoint.npz").exists()
    assert cli(["predict", str(tmp_path), "text"]) == 2
    assert "is not a run folder" in capsys.readouterr().err


def test_an_image_run_predicts_from_image_files(tmp_path, capsys):
    import PIL.Image

    out = tmp_path / "run"
    train.fit(
        out=out,
        model="cct_2_3x2_32",
        dataset="digits",
        epochs=1,
        train_images=64,
        batch_size=32,
        warmup_epochs=0,
        verbose=0,
    )
    digits = image_data.load_dataset("digits")
    path = tmp_path / "digit.png"
    PIL.Image.fromarray(digits.test.images[0]).save(path)
    assert cli(["predict", str(out), str(path), "--top", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{path}: ") and printed.count(", ") == 1
    with pytest.raises(RunError, match="cannot be used"):
        predict(out, [str(tmp_path / "missing.png")])


def test_fortunes_learning_check(tmp_path):
    """text_cct_2 on the real fortunes split beats the majority class clearly in four epochs
    (the full recipe's figures are in benchmarks/RESULTS.md)."""
    if not text_data.FORTUNES_DIR.is_dir():
        pytest.skip("the Debian package fortunes is not installed (apt-get install fortunes)")
    dataset = text_data.load_text_dataset("fortunes")
    recipe = train.make_recipe(model="text_cct_2", epochs=4, warmup_epochs=1)
    run = train.Run(tmp_path / "run", recipe, verbose=0, dataset=dataset).train()
    majority = np.bincount(dataset.test.labels).max() / len(dataset.test)
    assert run.best_accuracy >= majority + 0.15


def test_empty_corpora_are_refused():
    with pytest.raises(DatasetError, match="no texts"):
        TextEncoder.learn([])
