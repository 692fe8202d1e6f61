"""resolve_model: name/path resolution, sha256 check against the card, signature check."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import pytest

from v4runtime.errors import ModelError
from v4runtime.model.card import card_path, read_card, sha256_file, write_card
from v4runtime.model.registry import DEFAULT_MODEL, MODELS_DIR, available_models, resolve_model
from v4runtime.streams.spec import CONTENT_FEATURES


def _copy(exported, tmp_path: Path, name: str = "m.onnx") -> Path:
    _, src = exported
    dst = tmp_path / name
    shutil.copy(src, dst)
    shutil.copy(card_path(src), card_path(dst))
    return dst


def test_resolves_a_path_with_its_card(exported, tmp_path: Path) -> None:
    path = _copy(exported, tmp_path)
    resolved = resolve_model(str(path))
    assert resolved.path == path.resolve()
    assert resolved.sha256 == read_card(card_path(path)).sha256 == resolved.card.sha256
    assert resolved.card.parameters > 0 and resolved.card.flops > 0


def test_default_is_the_shipped_model() -> None:
    assert DEFAULT_MODEL in available_models()
    resolved = resolve_model()
    assert resolved.path == (MODELS_DIR / f"{DEFAULT_MODEL}.onnx").resolve()
    assert resolved.path.stat().st_size <= 10 * 1024 * 1024
    assert resolve_model(DEFAULT_MODEL).sha256 == resolved.sha256


def test_modified_model_fails_the_sha256_check(exported, tmp_path: Path) -> None:
    path = _copy(exported, tmp_path)
    with open(path, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match="sha256 mismatch") as err:
        resolve_model(path)
    assert err.value.reason == "sha256_mismatch"


def _rewrite(path: Path, edit) -> None:
    model = onnx.load(str(path))
    edit(model)
    onnx.save(model, str(path))
    card = read_card(card_path(path))
    # A card that matches the bytes: only the signature check can catch the problem.
    write_card(card.model_copy(update={"sha256": sha256_file(path)}), card_path(path))


def test_wrong_input_shape_fails_the_signature_check(exported, tmp_path: Path) -> None:
    path = _copy(exported, tmp_path)
    _rewrite(path, lambda m: m.graph.input[7].type.tensor_type.shape.dim[1].__setattr__("dim_value", 63))
    expected = rf"input 'content' has shape \[.*63\], expected \[N, {CONTENT_FEATURES}\]"
    with pytest.raises(ModelError, match=expected) as err:
        resolve_model(path)
    assert err.value.reason == "signature_mismatch"


def test_renamed_input_and_missing_output_fail_the_signature_check(exported, tmp_path: Path) -> None:
    path = _copy(exported, tmp_path)

    def edit(model: onnx.ModelProto) -> None:
        model.graph.input[0].name = "image"
        del model.graph.output[2]

    _rewrite(path, edit)
    with pytest.raises(ModelError) as err:
        resolve_model(path)
    assert "inputs are ['image'" in str(err.value)
    assert "output 'gate_weights' is missing" in str(err.value)


def test_missing_card_unknown_name_missing_file_and_garbage(exported, tmp_path: Path) -> None:
    path = _copy(exported, tmp_path)
    card_path(path).unlink()
    with pytest.raises(ModelError, match="model card not found"):
        resolve_model(path)
    with pytest.raises(ModelError, match="unknown model 'no-such-model'.*v4-default"):
        resolve_model("no-such-model")
    with pytest.raises(ModelError, match="model file not found"):
        resolve_model(tmp_path / "absent.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all")
    write_card(read_card(card_path(exported[1])).model_copy(update={"sha256": sha256_file(junk)}), card_path(junk))
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        resolve_model(junk)


def test_invalid_card_is_reported(exported, tmp_path: Path) -> None:
    path = _copy(exported, tmp_path)
    card_path(path).write_text('{"name": "x"}')
    with pytest.raises(ModelError, match="invalid model card .*sha256"):
        resolve_model(path)
