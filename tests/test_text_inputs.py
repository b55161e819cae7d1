"""Hostile and odd inputs to text runs: a run folder's encoder.json edited by hand, ids outside
the vocabulary, sequence lengths and widths that cannot fit in memory, a disk too small for
the run."""

import hashlib
import json
import shutil
from collections import namedtuple

import numpy as np
import pytest

import cct_fast
from cct_fast import train
from cct_fast.cli import main as cli
from cct_fast.data import text_encoder
from cct_fast.data.text_encoder import TextEncoder
from cct_fast.errors import ConfigError, DatasetError, WriteError
from cct_fast.export import load_onnx, to_onnx

from helpers import QUICK_TEXT, relative_error, topic_csv


def _contents(folder):
    """Each file of a run folder and a hash of its bytes, the lock a run takes left out."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.iterdir()
        if p.name != ".lock"
    }


def _nothing_written(folder):
    """Only the lock a run takes first (a folder another run may then use) is there."""
    return not folder.exists() or [p.name for p in folder.iterdir()] == [".lock"]


@pytest.fixture
def run_copy(topic_run, tmp_path):
    """A copy of the session's text run, free to edit."""
    run, _ = topic_run
    return shutil.copytree(run.folder, tmp_path / "run", ignore=shutil.ignore_patterns(".lock"))


def _edit_json(path, **changes):
    saved = json.loads(path.read_text())
    saved.update(changes)
    path.write_text(json.dumps(saved))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda v: v + [v[5]], "1 entries appear twice, such as"),
        (lambda v: v[:3] + [42] + v[4:], r"entries \[3\] are \[42\], where every entry is a"),
        (lambda v: v[:3] + [""] + v[4:], "non-empty string"),
        (lambda v: {"cat": 1}, "expected a list of strings, got dict"),
    ],
)
def test_a_hand_edited_vocabulary_is_refused_with_exit_2(run_copy, capsys, edit, message):
    encoder = run_copy / "encoder.json"
    _edit_json(encoder, vocabulary=edit(json.loads(encoder.read_text())["vocabulary"]))
    before = _contents(run_copy)
    assert cli(["predict", str(run_copy), "a cat and a dog"]) == 2
    error = capsys.readouterr().err
    assert "encoder.json is not a saved cct_fast text encoder" in error
    assert "Not a WordPiece vocabulary" in error and len(error) < 600
    assert _contents(run_copy) == before


def test_an_encoder_that_disagrees_with_the_recipe_is_refused(run_copy, capsys):
    _edit_json(run_copy / "encoder.json", seq_len=10**8)
    assert cli(["predict", str(run_copy), "a cat"]) == 2
    assert "pads texts to 100000000 pieces" in capsys.readouterr().err
    # Both edited alike: the model is refused from its size, before the sine table exists.
    _edit_json(run_copy / "recipe.json", seq_len=10**8)
    assert cli(["predict", str(run_copy), "a cat"]) == 2
    error = capsys.readouterr().err
    assert "text_cct_2 cannot run in this machine's memory" in error
    assert "50,000,001 tokens" in error


def test_a_recipe_switched_to_another_model_is_refused_on_resume(run_copy, capsys):
    _edit_json(run_copy / "recipe.json", model="text_cct_4")
    before = _contents(run_copy)
    assert cli(["train", "--resume", "--out", str(run_copy)]) == 2
    error = capsys.readouterr().err
    assert "checkpoint.npz does not match this model" in error and "nothing was loaded" in error
    assert _contents(run_copy) == before


def test_encoder_files_and_settings_out_of_bounds_are_refused(tmp_path, monkeypatch):
    vocabulary = ["[UNK]", "[PAD]", "cat"]
    with pytest.raises(DatasetError, match="seq_len must be a positive integer; got 0"):
        TextEncoder(vocabulary, seq_len=0)
    with pytest.raises(DatasetError, match="lower_case must be true or false; got 'yes'"):
        TextEncoder(vocabulary, lower_case="yes")
    path = TextEncoder(vocabulary).save(tmp_path / "encoder.json")
    monkeypatch.setattr(text_encoder, "MAX_FILE_BYTES", path.stat().st_size - 1)
    with pytest.raises(DatasetError, match="over the 0 MiB an encoder takes"):
        TextEncoder.load(path)


def test_ids_outside_the_vocabulary_are_named_on_every_path(topic_run, tmp_path):
    run, _ = topic_run
    model, vocab_size = run.model, run.model.config.vocab_size
    ids, mask = (np.asarray(value) for value in run.encoder(["a cat", "the storm today"]))
    predictor = load_onnx(to_onnx(model, tmp_path / "text.onnx"), ["CPUExecutionProvider"])
    assert predictor.vocab_size == vocab_size
    for wrong in (vocab_size, -1):
        bad = ids.copy()
        bad[1, 0] = wrong
        message = f"vocabulary of {vocab_size} ids; got token ids from {bad.min()} to {bad.max()}"
        with pytest.raises(ValueError, match=message):
            model((bad, mask))
        with pytest.raises(ValueError, match=message):
            model.predict((bad, mask), verbose=0)
        with pytest.raises(ValueError, match=message):
            predictor.predict((bad, mask))
    good = model.predict((ids, mask), verbose=0)
    assert relative_error(predictor.predict((ids, mask)), good) <= 1e-4


@pytest.mark.parametrize(
    "name, settings, words",
    [
        ("cct_7_3x1_32", dict(embedding_dim=10**6, num_heads=4), "56,000,352,000,011 weights"),
        ("cct_7_3x1_32", dict(img_size=100_000), "2,500,000,000 tokens"),
        ("text_cct_2", dict(seq_len=10**8, vocab_size=100), "50,000,001 tokens"),
    ],
)
def test_a_model_that_cannot_fit_in_memory_is_refused_before_it_is_built(name, settings, words):
    with pytest.raises(ConfigError, match="cannot run in this machine's memory") as refused:
        cct_fast.create_model(name, **settings)
    assert words in str(refused.value)


def test_a_batch_that_cannot_fit_is_refused_before_training(tmp_path):
    """seq_len 100,000 builds (one text's attention fits), and a batch of 16 does not."""
    dataset = topic_csv(tmp_path / "topics.csv", per_topic=10)
    settings = dict(QUICK_TEXT, seq_len=100_000)
    with pytest.raises(ConfigError, match="cannot train in this machine's memory") as refused:
        train.fit(out=tmp_path / "run", dataset=dataset, verbose=0, **settings)
    assert "a batch of 16 over 50,001 tokens" in str(refused.value)
    assert _nothing_written(tmp_path / "run")


def test_a_run_the_disk_cannot_hold_is_refused_before_it_writes(tmp_path, monkeypatch):
    dataset = topic_csv(tmp_path / "topics.csv", per_topic=10)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(
        "cct_fast.base.files.shutil.disk_usage", lambda _: usage(2**30, 2**30, 2**20)
    )
    with pytest.raises(WriteError, match="Not enough space for this run") as refused:
        train.fit(out=tmp_path / "run", dataset=dataset, verbose=0, **QUICK_TEXT)
    assert "best.weights.h5, last.weights.h5, checkpoint.npz" in str(refused.value)
    assert "1.0 MB are free; nothing was written" in str(refused.value)
    assert _nothing_written(tmp_path / "run")
