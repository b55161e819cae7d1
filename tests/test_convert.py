"""Official checkpoints and Keras weights into models: mapping, adaptation and errors."""

import warnings

import numpy as np
import pytest

import cct_fast
from cct_fast.cli import main as cli
from cct_fast.weights.pth import CheckpointError

from helpers import assert_same_weights, keras_model_roundtrip, relative_error, trained_like

PARITY_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def official_cct2(official):
    """An official cct_2_3x2_32 with perturbed weights, and its checkpoint file."""
    config = cct_fast.create_model("cct_2_3x2_32").config
    reference = official.trained_like(official.model(config), seed=3)
    return reference


def _save(official, tmp_path, checkpoint, name="ckpt.pth"):
    path = tmp_path / name
    official.torch.save(checkpoint, path)
    return path


def _images(rng, side=32, batch=2):
    return rng.standard_normal((batch, side, side, 3)).astype("float32")


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "dataparallel"])
def test_official_checkpoint_gives_official_logits(official, official_cct2, tmp_path, rng, wrap):
    state = official_cct2.state_dict()
    checkpoint = {
        "plain": state,
        "state_dict": {"state_dict": state, "epoch": 300},
        "model": {"model": state, "optimizer": {}},
        "dataparallel": {f"module.{key}": value for key, value in state.items()},
    }[wrap]
    model = cct_fast.create_model("cct_2_3x2_32", weights=_save(official, tmp_path, checkpoint))
    images = _images(rng)
    assert relative_error(model(images), official.logits(official_cct2, images)) <= PARITY_TOLERANCE


def test_missing_unexpected_and_misshaped_tensors_are_all_named(official, official_cct2):
    state = official.state_dict(official_cct2)
    del state["classifier.blocks.1.linear1.bias"]
    state["classifier.extra.weight"] = np.zeros(3, "float32")
    state["classifier.blocks.0.self_attn.qkv.weight"] = np.zeros((384, 64), "float32")
    model = cct_fast.create_model("cct_2_3x2_32")
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(CheckpointError) as caught:
        cct_fast.weights.official_keys.load_official_state_dict(model, state, source="ckpt.pth")
    message = str(caught.value)
    assert "missing tensors (1): classifier.blocks.1.linear1.bias" in message
    assert "unexpected tensors (1): classifier.extra.weight" in message
    assert (
        "classifier.blocks.0.self_attn.qkv.weight: checkpoint (384, 64), model (384, 128)"
        in message
    )
    for old, new in zip(before, model.get_weights(), strict=False):  # nothing was half-loaded
        np.testing.assert_array_equal(old, new)


def test_checkpoint_of_another_architecture(official, official_cct2):
    with pytest.raises(
        CheckpointError,
        match="(?s)does not fit cct_7_3x1_32.*missing tensors \\(55\\).*and 47 more"
        ".*holds 2 encoder layers of width 128"
        ".*cct_7_3x1_32 has 7 encoder layers of width 256 after 1 tokenizer",
    ):
        cct_fast.weights.official_keys.load_official_state_dict(
            cct_fast.create_model("cct_7_3x1_32"), official.state_dict(official_cct2)
        )


def _official_pe_check(official, state, model_side_tokens, num_prefix_tokens=0):
    """The official ``pe_check``/``resize_pos_embed``, written with torch as upstream does."""
    pe = official.torch.from_numpy(state["classifier.positional_emb"])
    prefix, grid = pe[:, :num_prefix_tokens], pe[0, num_prefix_tokens:]
    old, new = int(grid.shape[0] ** 0.5), int(model_side_tokens**0.5)
    grid = grid.reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = official.torch.nn.functional.interpolate(grid, size=(new, new), mode="bilinear")
    grid = grid.permute(0, 2, 3, 1).reshape(1, new * new, -1)
    return {**state, "classifier.positional_emb": official.torch.cat([prefix, grid], 1).numpy()}


@pytest.mark.parametrize("name", ["cct_2_3x2_32", "vit_2_4_32"])
def test_new_image_size_resizes_the_embedding_as_pe_check(official, name, tmp_path, rng):
    small = official.model(cct_fast.create_model(name).config)
    official.trained_like(small, seed=5)
    model = cct_fast.create_model(
        name, img_size=48, weights=_save(official, tmp_path, small.state_dict())
    )
    large = official.model(model.config)
    resized = _official_pe_check(
        official,
        official.state_dict(small),
        model.config.sequence_length,
        model.config.num_prefix_tokens,
    )
    large.load_state_dict({key: official.torch.from_numpy(value) for key, value in resized.items()})
    images = _images(rng, side=48)
    assert relative_error(model(images), official.logits(large, images)) <= PARITY_TOLERANCE


def test_new_class_count_keeps_a_fresh_head_and_warns(official, official_cct2, tmp_path):
    path = _save(official, tmp_path, official_cct2.state_dict())
    with pytest.warns(UserWarning, match="weights have 10 classes, the model 5"):
        model = cct_fast.create_model("cct_2_3x2_32", num_classes=5, weights=path)
    assert model.head.kernel.shape == (128, 5)
    assert np.all(model.head.bias.numpy() == 0.0)  # fresh, not loaded
    norm = official_cct2.state_dict()["classifier.norm.weight"].numpy()
    np.testing.assert_array_equal(model.norm.gamma.numpy(), norm)


def test_features_only_model_ignores_the_head(official, official_cct2, tmp_path):
    path = _save(official, tmp_path, official_cct2.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = cct_fast.create_model("cct_2_3x2_32", include_top=False, weights=path)
    assert model.head is None


def test_sine_table_may_be_absent_from_a_checkpoint(official, tmp_path, rng):
    config = cct_fast.create_model("cct_2_3x2_32_sine").config
    reference = official.trained_like(official.model(config))
    state = {k: v for k, v in reference.state_dict().items() if k != "classifier.positional_emb"}
    model = cct_fast.create_model("cct_2_3x2_32_sine", weights=_save(official, tmp_path, state))
    images = _images(rng)
    assert relative_error(model(images), official.logits(reference, images)) <= PARITY_TOLERANCE


def test_pth_to_keras_to_dot_keras_round_trip(official, official_cct2, tmp_path, rng):
    model = cct_fast.create_model(
        "cct_2_3x2_32", weights=_save(official, tmp_path, official_cct2.state_dict())
    )
    cct_fast.save_weights(model, tmp_path / "w.weights.h5")
    from_h5 = cct_fast.create_model("cct_2_3x2_32", weights=tmp_path / "w.weights.h5")
    restored = keras_model_roundtrip(from_h5, tmp_path / "m.keras")
    from_keras = cct_fast.create_model("cct_2_3x2_32", weights=tmp_path / "m.keras")
    images = _images(rng)
    expected = official.logits(official_cct2, images)
    for candidate in (model, from_h5, restored, from_keras):
        assert relative_error(candidate(images), expected) <= PARITY_TOLERANCE
    assert_same_weights(model, from_keras)


@pytest.mark.parametrize("name", ["cct_2_3x2_32", "vit_2_4_32"])
def test_keras_weights_adapt_like_checkpoints(official, name, tmp_path, rng):
    model = trained_like(cct_fast.create_model(name), rng)
    cct_fast.save_weights(model, tmp_path / "w.weights.h5")
    with pytest.warns(UserWarning, match="10 classes, the model 3"):
        other = cct_fast.create_model(
            name, num_classes=3, img_size=64, weights=tmp_path / "w.weights.h5"
        )
    # The resize is the official pe_check's bilinear arithmetic, value for value.
    expected = _official_pe_check(
        official,
        {"classifier.positional_emb": model.positional_embedding.embedding.numpy()},
        other.config.sequence_length,
        other.config.num_prefix_tokens,
    )["classifier.positional_emb"]
    assert other.positional_embedding.embedding.shape == expected.shape
    assert relative_error(other.positional_embedding.embedding, expected) <= 1e-6
    np.testing.assert_array_equal(other.norm.gamma.numpy(), model.norm.gamma.numpy())


def test_backbone_weights_load_into_a_model_with_a_head_and_warn(tmp_path):
    backbone = cct_fast.create_model("cct_2_3x2_32", include_top=False)
    cct_fast.save_weights(backbone, tmp_path / "backbone.weights.h5")
    with pytest.warns(UserWarning, match="weights hold none"):
        model = cct_fast.create_model("cct_2_3x2_32", weights=tmp_path / "backbone.weights.h5")
    np.testing.assert_array_equal(model.norm.gamma.numpy(), backbone.norm.gamma.numpy())
    full = cct_fast.create_model(
        "cct_2_3x2_32", include_top=False, weights=tmp_path / "backbone.weights.h5"
    )
    assert_same_weights(full, backbone)


def _assert_load_refused(model, path, pattern):
    """Loading ``path``, through cct_fast.load_weights and through Keras' own
    ``model.load_weights``, fails with ``pattern``, without a warning, and assigns nothing."""
    before = model.get_weights()
    for load in (lambda: cct_fast.load_weights(model, path), lambda: model.load_weights(path)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(CheckpointError, match=pattern):
                load()
        for old, new in zip(before, model.get_weights(), strict=True):
            np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize(
    "saved, loaded, file_name, extra_blocks",
    [
        ("cct_7_3x1_32", "cct_6_3x1_32", "w.weights.h5", "blocks/transformer_encoder_layer_6"),
        (
            "cct_4_3x2_32",
            "cct_2_3x2_32",
            "m.keras",
            "blocks/transformer_encoder_layer_2, blocks/transformer_encoder_layer_3",
        ),
    ],
)
def test_keras_weights_of_a_deeper_model_are_refused_naming_the_depths(
    tmp_path, saved, loaded, file_name, extra_blocks
):
    cct_fast.save_weights(cct_fast.create_model(saved), tmp_path / file_name)
    depth, shallower = int(saved.split("_")[1]), int(loaded.split("_")[1])
    _assert_load_refused(
        cct_fast.create_model(loaded),
        tmp_path / file_name,
        rf"(?s){file_name} does not fit {loaded} .*unexpected weights \(\d\): {extra_blocks}\n"
        rf".*It holds {depth} encoder layers .*; {loaded} has {shallower} encoder layers",
    )


def test_keras_load_weights_refuses_another_head_unless_told_to_skip_it(tmp_path):
    """As Keras' method: a mismatch is an error, and skip_mismatch=True skips it (the head
    stays freshly initialised, with a warning); everything else is loaded and checked."""
    trained = cct_fast.create_model("cct_2_3x2_32", num_classes=10)
    cct_fast.save_weights(trained, tmp_path / "w.weights.h5")
    model = cct_fast.create_model("cct_2_3x2_32", num_classes=3)
    head = [w.numpy() for w in model.head.weights]
    with pytest.raises(CheckpointError, match="head"):
        model.load_weights(tmp_path / "w.weights.h5")
    with pytest.warns(UserWarning, match="head"):
        model.load_weights(tmp_path / "w.weights.h5", skip_mismatch=True)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(head, model.head.weights, strict=True))
    np.testing.assert_array_equal(model.norm.gamma.numpy(), trained.norm.gamma.numpy())


def test_keras_load_weights_reads_official_checkpoints_too(tmp_path):
    model = cct_fast.create_model("cct_2_3x2_32")
    other = cct_fast.create_model("cct_2_3x2_32")
    path = tmp_path / "official.pth"
    torch = pytest.importorskip("torch")
    state = cct_fast.weights.official_keys.official_state_dict(model)
    torch.save({key: torch.from_numpy(np.array(value)) for key, value in state.items()}, path)
    other.load_weights(path)
    assert_same_weights(model, other)


def test_keras_weights_of_another_architecture_name_every_mismatch(tmp_path):
    cct_fast.save_weights(cct_fast.create_model("vit_2_4_32"), tmp_path / "w.weights.h5")
    _assert_load_refused(
        cct_fast.create_model("cct_2_3x2_32"),
        tmp_path / "w.weights.h5",
        r"(?s)w.weights.h5 does not fit cct_2_3x2_32 \(31 weights expected\).*"
        r"missing weights \(2\): layers/conv_tokenizer/convs/conv2d_1, layers/sequence_pooling.*"
        r"unexpected weights \(2\): class_token, .*"
        r"conv2d/vars/0: file \(4, 4, 3, 128\), model \(3, 3, 3, 64\).*"
        r"after 1 tokenizer convolution\(s\), and a head for 10 classes; cct_2_3x2_32 has .* "
        r"after 2 tokenizer",
    )


def test_a_failure_while_layers_load_puts_every_weight_back(tmp_path):
    """A 10-token embedding passes the shape check (another token count is resized) and
    fails only in the layer, after the layers before it were loaded."""
    model = cct_fast.create_model("cct_2_3x2_32")
    state = cct_fast.weights.official_keys.official_state_dict(model)
    state["classifier.positional_emb"] = np.zeros((1, 10, 128), "float32")
    state["classifier.norm.weight"] = np.full(128, 7.0, "float32")
    before = model.get_weights()
    with pytest.raises(ValueError, match="10 image tokens: it is not a square grid"):
        with cct_fast.weights.loading._all_or_nothing(model):
            cct_fast.weights.official_keys.load_official_state_dict(model, state)
    for old, new in zip(before, model.get_weights(), strict=False):
        np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize(
    "file_name, problem",
    [
        ("m.keras", "the .keras archive is truncated or corrupt"),
        ("w.weights.h5", "it is not a readable HDF5 weights file, or is truncated"),
    ],
)
def test_truncated_keras_files_are_named_with_their_problem(tmp_path, file_name, problem):
    path = tmp_path / file_name
    cct_fast.save_weights(cct_fast.create_model("cct_2_3x2_32"), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _assert_load_refused(
        cct_fast.create_model("cct_2_3x2_32"), path, f"Cannot read .*{file_name}: {problem}"
    )


def test_a_keras_model_file_without_weights_is_named(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "m.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    _assert_load_refused(
        cct_fast.create_model("cct_2_3x2_32"),
        tmp_path / "m.keras",
        "m.keras holds no model.weights.h5",
    )


def test_keras_weights_with_nan_are_named_in_a_warning(tmp_path):
    model = cct_fast.create_model("cct_2_3x2_32")
    model.norm.gamma.assign(np.full(128, np.nan, "float32"))
    cct_fast.save_weights(model, tmp_path / "w.weights.h5")
    with pytest.warns(
        UserWarning,
        match=r"holds NaN or Inf values in 1 tensor\(s\): "
        r"layers/layer_normalization/vars/0",
    ):
        cct_fast.create_model("cct_2_3x2_32", weights=tmp_path / "w.weights.h5")


@pytest.mark.parametrize("suffix", [".pth", ".weights.h5"])
def test_a_new_head_can_be_refused(official, official_cct2, tmp_path, suffix):
    path = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        official.torch.save(official_cct2.state_dict(), path)
    else:
        cct_fast.save_weights(cct_fast.create_model("cct_2_3x2_32"), path)
    model = cct_fast.create_model("cct_2_3x2_32", num_classes=5)
    before = model.get_weights()
    with pytest.raises(
        CheckpointError,
        match=r"of the wrong shape .*(fc.weight: checkpoint "
        r"\(10, 128\), model \(5, 128\)|head/vars/0: file "
        r"\(128, 10\), model \(128, 5\))",
    ):
        cct_fast.load_weights(model, path, allow_new_head=False)
    for old, new in zip(before, model.get_weights(), strict=False):
        np.testing.assert_array_equal(old, new)


def test_unknown_weights_file_type(tmp_path):
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"Unknown weights file type 'w.npz'.*\.pth"):
        cct_fast.create_model("cct_2_3x2_32", weights=tmp_path / "w.npz")


def test_cli_convert_writes_weights_equal_to_the_checkpoint(
    official, official_cct2, tmp_path, rng, capsys
):
    path = _save(official, tmp_path, official_cct2.state_dict())
    output = tmp_path / "out" / "cct2.weights.h5"
    assert cli(["convert", str(path), "--model", "cct_2_3x2_32", "-o", str(output)]) == 0
    assert "283,723 parameters" in capsys.readouterr().out
    model = cct_fast.create_model("cct_2_3x2_32", weights=output)
    images = _images(rng)
    assert relative_error(model(images), official.logits(official_cct2, images)) <= PARITY_TOLERANCE


def test_cli_convert_with_new_head(official, official_cct2, tmp_path):
    path = _save(official, tmp_path, official_cct2.state_dict())
    output = tmp_path / "five.weights.h5"
    with pytest.warns(UserWarning, match="10 classes, the model 5"):
        assert (
            cli(
                [
                    "convert",
                    str(path),
                    "--model",
                    "cct_2_3x2_32",
                    "--num-classes",
                    "5",
                    "-o",
                    str(output),
                ]
            )
            == 0
        )
    assert cct_fast.create_model("cct_2_3x2_32", num_classes=5, weights=output).head.units == 5


def test_failed_conversion_leaves_no_file_and_keeps_an_old_one(
    official, official_cct2, tmp_path, capsys
):
    path = _save(official, tmp_path, official_cct2.state_dict())
    output = tmp_path / "out.weights.h5"
    assert cli(["convert", str(path), "--model", "cct_7_3x1_32", "-o", str(output)]) == 2
    assert "does not fit cct_7_3x1_32" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth"]

    output.write_bytes(b"earlier result")
    assert cli(["convert", str(path), "--model", "cct_7_3x1_32", "-o", str(output)]) == 2
    assert output.read_bytes() == b"earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth", "out.weights.h5"]


def test_cli_convert_refuses_an_unknown_output_type(official, official_cct2, tmp_path, capsys):
    path = _save(official, tmp_path, official_cct2.state_dict())
    assert (
        cli(["convert", str(path), "--model", "cct_2_3x2_32", "-o", str(tmp_path / "x.bin")]) == 2
    )
    assert ".weights.h5 or .keras" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth"]


def test_cli_export_names_a_truncated_keras_file(tmp_path, capsys):
    path = tmp_path / "m.keras"
    cct_fast.create_model("cct_2_3x2_32").save(path)
    path.write_bytes(path.read_bytes()[:1000])
    assert cli(["export", str(path), "-o", str(tmp_path / "m.onnx")]) == 2
    assert "m.keras: the .keras archive is truncated or corrupt" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_official_state_dict_is_what_the_official_model_loads(official, official_cct2, rng):
    model = cct_fast.create_model("cct_2_3x2_32")
    trained_like(model, rng)
    reference = official.model(model.config)
    reference.load_state_dict(
        {
            k: official.torch.from_numpy(v)
            for k, v in cct_fast.weights.official_keys.official_state_dict(model).items()
        }
    )
    images = _images(rng)
    assert relative_error(model(images), official.logits(reference, images)) <= PARITY_TOLERANCE


def test_cli_convert_to_a_non_square_size(official, official_cct2, tmp_path, capsys):
    path = _save(official, tmp_path, official_cct2.state_dict())
    output = tmp_path / "wide.weights.h5"
    assert (
        cli(
            [
                "convert",
                str(path),
                "--model",
                "cct_2_3x2_32",
                "--img-size",
                "32x64",
                "-o",
                str(output),
            ]
        )
        == 0
    )
    model = cct_fast.create_model("cct_2_3x2_32", img_size=(32, 64), weights=output)
    assert model.positional_embedding.embedding.shape == (1, 128, 128)
    with pytest.raises(SystemExit):
        cli(
            [
                "convert",
                str(path),
                "--model",
                "cct_2_3x2_32",
                "--img-size",
                "wide",
                "-o",
                str(output),
            ]
        )
    assert (
        "expected SIDE or HEIGHTxWIDTH, e.g. 224 or 224x320; got 'wide'" in capsys.readouterr().err
    )
