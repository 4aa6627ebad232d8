"""The official state_dict importer: key errors, the RCN-F stream-3 guard, and the converter CLI."""

import pathlib
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from rcn_jax.models import from_torch_state_dict, saved, torch_import

VECTORS = pathlib.Path(__file__).parents[1] / "data" / "reference_vectors"


def _state_dict(case: str) -> dict[str, np.ndarray]:
  return torch_import.read_state_dict(str(VECTORS / f"{case}.npz"))


def test_unknown_key_is_named():
  state_dict = _state_dict("RCN_A_fm16_p5") | {"rcls.0.extra.weight": np.zeros(3)}
  with pytest.raises(ValueError, match=r"unknown key 'rcls.0.extra.weight'"):
    from_torch_state_dict("rcn_a", state_dict, features=16, pool_size=5)


def test_missing_key_is_named_by_its_official_name():
  state_dict = _state_dict("RCN_W_fm16_p5")
  del state_dict["stream3.2.running_var"]
  with pytest.raises(ValueError, match=r"missing keys \['stream3.2.running_var'\]"):
    from_torch_state_dict("rcn_w", state_dict, features=16, pool_size=5)


def test_misshaped_key_is_named():
  with pytest.raises(ValueError, match=r"key 'classifier.weight' has shape \(3, 400\)"):
    from_torch_state_dict("rcn_a", _state_dict("RCN_A_fm16_p5"), features=16, pool_size=7)


def test_dead_modules_and_counters_are_ignored_but_live_ones_are_required():
  state_dict = _state_dict("RCN_P_fm16_p5")
  assert any(k.startswith("rcls.") for k in state_dict)  # dead in the official RCN_P
  _, variables = from_torch_state_dict("rcn_p", state_dict, features=16, pool_size=5)
  assert set(variables["params"]["layer_0"]) == {"feedforward", "recurrent"}
  with pytest.raises(ValueError, match="unknown key 'rcls.0.ffconv.0.weight'"):
    from_torch_state_dict("rcn_s", {**_state_dict("RCN_S_fm16_p5"), **{
        k: v for k, v in state_dict.items() if k.startswith("rcls.")}}, features=16, pool_size=5)


def test_official_rcn_f_weights_need_quirks():
  with pytest.raises(ValueError, match="stream 3"):
    from_torch_state_dict("rcn_f", _state_dict("RCN_F_fm16_p5"), features=16, pool_size=5,
                          reference_quirks=False)


def test_classifier_rows_are_reordered_from_channel_major():
  state_dict = _state_dict("RCN_A_fm16_p5")
  _, variables = from_torch_state_dict("rcn_a", state_dict, features=16, pool_size=5)
  kernel = np.asarray(variables["params"]["classifier_kernel"])
  official = state_dict["classifier.weight"]
  channel, row, col, cls = 7, 2, 4, 1
  assert kernel[(row * 5 + col) * 16 + channel, cls] == official[cls, channel * 25 + row * 5 + col]


def test_converter_writes_a_loadable_model(tmp_path):
  out = tmp_path / "model"
  subprocess.run([sys.executable, "-m", "rcn_jax.models.convert", "--preset=rcn_a",
                  f"--input={VECTORS / 'RCN_A_fm16_p5.npz'}", f"--output={out}"], check=True,
                 capture_output=True)
  model, variables = saved.load_model(str(out))
  inputs = np.load(VECTORS / "input_b8.npz")
  logits = model.apply(variables, jnp.asarray(inputs["x"].transpose(0, 2, 3, 1)), train=False)
  np.testing.assert_allclose(logits, np.load(VECTORS / "RCN_A_fm16_p5.npz")["eval/logits_f32"],
                             atol=1e-5)
  with pytest.raises(FileNotFoundError, match="model.json"):
    saved.load_model(str(tmp_path / "nothing"))
