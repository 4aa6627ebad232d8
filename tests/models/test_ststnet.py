"""STSTNet against an independent NumPy implementation of issue 23's description, in float64.

The NumPy model below is written from the description alone (NCHW, PyTorch's layouts and key
names): three branches Conv 3x3 p2 (3 -> 3, 5, 8) -> ReLU -> BN -> MaxPool 3 s3 p1 -> Dropout,
concatenation, AvgPool 2 s2, channel-major flatten, Linear 400 -> 3. Its gradients come from a
hand-written backward pass, checked once against central finite differences.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rcn_jax import errors, models
from rcn_jax.engine.program import model_input

CHANNELS = (3, 5, 8)
EPS = 1e-5


@pytest.fixture(autouse=True)
def float64():
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", False)


def random_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
  """A random state dict in the published key layout (with PyTorch's `num_batches_tracked`)."""
  rng = np.random.default_rng(seed)
  sd = {}
  for i, c in enumerate(CHANNELS, start=1):
    sd[f"conv{i}.weight"] = rng.normal(0, 0.3, (c, 3, 3, 3))
    sd[f"conv{i}.bias"] = rng.normal(0, 0.1, c)
    sd[f"bn{i}.weight"] = rng.uniform(0.5, 1.5, c)
    sd[f"bn{i}.bias"] = rng.normal(0, 0.1, c)
    sd[f"bn{i}.running_mean"] = rng.normal(0, 0.2, c)
    sd[f"bn{i}.running_var"] = rng.uniform(0.5, 2.0, c)
    sd[f"bn{i}.num_batches_tracked"] = np.asarray(17, np.int64)
  sd["fc.weight"] = rng.normal(0, 0.1, (3, 400))
  sd["fc.bias"] = rng.normal(0, 0.1, 3)
  return sd


def np_forward(sd, x_nchw, train: bool):
  """Logits `[N, 3]` and the cache of the backward pass; BN with batch statistics when `train`."""
  n = x_nchw.shape[0]
  xp = np.pad(x_nchw, ((0, 0), (0, 0), (2, 2), (2, 2)))
  # im2col of the padded input: [N, 27, 30, 30], row order (in_channel, kh, kw) as conv weights.
  cols = np.stack([xp[:, c, i:i + 30, j:j + 30] for c in range(3) for i in range(3) for j in range(3)], axis=1)
  cache, pooled = {"cols": cols, "branches": []}, []
  for b, c in enumerate(CHANNELS, start=1):
    w = sd[f"conv{b}.weight"].reshape(c, 27)
    z = np.einsum("ok,nkhw->nohw", w, cols) + sd[f"conv{b}.bias"][None, :, None, None]
    r = np.maximum(z, 0)
    if train:
      mean, var = r.mean(axis=(0, 2, 3)), r.var(axis=(0, 2, 3))
    else:
      mean, var = sd[f"bn{b}.running_mean"], sd[f"bn{b}.running_var"]
    inv = 1 / np.sqrt(var + EPS)
    xhat = (r - mean[None, :, None, None]) * inv[None, :, None, None]
    y = xhat * sd[f"bn{b}.weight"][None, :, None, None] + sd[f"bn{b}.bias"][None, :, None, None]
    yp = np.pad(y, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)  # 32x32 -> 10x10 windows
    windows = yp[:, :, :30, :30].reshape(n, c, 10, 3, 10, 3).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, 10, 10, 9)
    arg = windows.argmax(axis=-1)
    pooled.append(windows.max(axis=-1))
    cache["branches"].append(dict(z=z, xhat=xhat, inv=inv, arg=arg, c=c))
  cat = np.concatenate(pooled, axis=1)  # [N, 16, 10, 10]
  avg = cat.reshape(n, 16, 5, 2, 5, 2).mean(axis=(3, 5))
  feats = avg.reshape(n, 400)
  cache["feats"] = feats
  return feats @ sd["fc.weight"].T + sd["fc.bias"], cache


def np_loss_and_grads(sd, x_nchw, labels, train: bool):
  """Summed cross-entropy and its gradients by hand-written backward (BN with batch statistics in train)."""
  logits, cache = np_forward(sd, x_nchw, train)
  n = logits.shape[0]
  shifted = logits - logits.max(axis=1, keepdims=True)
  logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
  loss = -logp[np.arange(n), labels].sum()
  dlogits = np.exp(logp)
  dlogits[np.arange(n), labels] -= 1
  grads = {"fc.weight": dlogits.T @ cache["feats"], "fc.bias": dlogits.sum(axis=0)}
  dcat = np.repeat(np.repeat((dlogits @ sd["fc.weight"]).reshape(n, 16, 5, 5) / 4, 2, axis=2), 2, axis=3)
  start = 0
  for b, entry in enumerate(cache["branches"], start=1):
    c = entry["c"]
    dpool = dcat[:, start:start + c]
    start += c
    dwin = np.zeros((n, c, 10, 10, 9))
    np.put_along_axis(dwin, entry["arg"][..., None], dpool[..., None], axis=-1)
    dyp = np.zeros((n, c, 32, 32))
    dyp[:, :, :30, :30] = dwin.reshape(n, c, 10, 10, 3, 3).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, 30, 30)
    dy = dyp[:, :, 1:31, 1:31]
    grads[f"bn{b}.bias"] = dy.sum(axis=(0, 2, 3))
    grads[f"bn{b}.weight"] = (dy * entry["xhat"]).sum(axis=(0, 2, 3))
    dxhat = dy * sd[f"bn{b}.weight"][None, :, None, None]
    inv = entry["inv"][None, :, None, None]
    if train:
      m = n * 900
      dr = inv / m * (m * dxhat - dxhat.sum(axis=(0, 2, 3), keepdims=True)
                      - entry["xhat"] * (dxhat * entry["xhat"]).sum(axis=(0, 2, 3), keepdims=True))
    else:
      dr = dxhat * inv
    dz = dr * (entry["z"] > 0)
    grads[f"conv{b}.bias"] = dz.sum(axis=(0, 2, 3))
    grads[f"conv{b}.weight"] = np.einsum("nohw,nkhw->ok", dz, cache["cols"]).reshape(c, 3, 3, 3)
  return loss, grads


def jax_loss_and_grads(sd, x_nhwc, labels, train: bool):
  model, variables = models.from_torch_state_dict("ststnet", sd, features=16, pool_size=1)
  model = model.clone(dropout_rate=0.0)

  def loss_fn(params):
    logits, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x_nhwc, train=train,
                            mutable=["batch_stats"], rngs={"dropout": jax.random.key(0)})
    logp = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(logp, labels[:, None], axis=1).sum(), logits

  (loss, logits), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(variables["params"])
  return loss, logits, grads


def to_torch_layout(grads) -> dict[str, np.ndarray]:
  out = {"fc.weight": np.asarray(grads["fc"]["kernel"]).T, "fc.bias": np.asarray(grads["fc"]["bias"])}
  for b in (1, 2, 3):
    out[f"conv{b}.weight"] = np.asarray(grads[f"conv{b}"]["kernel"]).transpose(3, 2, 0, 1)
    out[f"conv{b}.bias"] = np.asarray(grads[f"conv{b}"]["bias"])
    out[f"bn{b}.weight"] = np.asarray(grads[f"bn{b}"]["scale"])
    out[f"bn{b}.bias"] = np.asarray(grads[f"bn{b}"]["bias"])
  return out


def inputs(seed: int = 1, n: int = 6):
  """BGR 0..255-like inputs as the model reads them (NCHW for NumPy, NHWC for rcn-jax) and labels."""
  rng = np.random.default_rng(seed)
  x = rng.uniform(0, 1, (n, 28, 28, 3))
  seen = np.asarray(model_input(x, "bgr", 255.0)) / 255.0  # scaled down: random weights stay in range
  return seen.transpose(0, 3, 1, 2), jnp.asarray(seen), np.arange(n) % 3


def test_model_shapes_and_parameter_count():
  model = models.create_model("ststnet", features=16, pool_size=1)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 3))))
  assert sum(leaf.size for leaf in jax.tree.leaves(variables["params"])) == 1683  # STSTNet's published count
  assert variables["params"]["fc"]["kernel"].shape == (400, 3)


@pytest.mark.parametrize("train", [False, True])
def test_logits_and_gradients_equal_numpy(train):
  sd = random_state_dict()
  x_nchw, x_nhwc, labels = inputs()
  np_logits, _ = np_forward(sd, x_nchw, train)
  np_loss, np_grads = np_loss_and_grads(sd, x_nchw, labels, train)
  loss, logits, grads = jax_loss_and_grads(sd, x_nhwc, jnp.asarray(labels), train)
  np.testing.assert_allclose(np.asarray(logits), np_logits, rtol=0, atol=1e-9 * np.abs(np_logits).max())
  np.testing.assert_allclose(float(loss), np_loss, rtol=1e-10)
  for key, expected in to_torch_layout(grads).items():
    scale = max(np.abs(np_grads[key]).max(), 1e-12)
    np.testing.assert_allclose(expected, np_grads[key], rtol=0, atol=1e-9 * scale, err_msg=key)


def test_hand_written_backward_matches_finite_differences():
  """The NumPy oracle's own gradients, checked where a tiny step crosses no ReLU or max-pool kink."""
  sd = random_state_dict(3)
  x_nchw, _, labels = inputs(4, n=3)
  _, grads = np_loss_and_grads(sd, x_nchw, labels, True)
  rng = np.random.default_rng(0)
  for key in ("fc.weight", "bn2.weight", "conv3.weight", "conv1.bias"):
    index = tuple(rng.integers(0, s) for s in sd[key].shape)
    step = 1e-6
    plus, minus = dict(sd), dict(sd)
    plus[key], minus[key] = sd[key].copy(), sd[key].copy()
    plus[key][index] += step
    minus[key][index] -= step
    numeric = (np_loss_and_grads(plus, x_nchw, labels, True)[0]
               - np_loss_and_grads(minus, x_nchw, labels, True)[0]) / (2 * step)
    assert numeric == pytest.approx(grads[key][index], rel=1e-5, abs=1e-7), key


def test_importer_round_trip_at_1e9():
  sd = random_state_dict(5)
  x_nchw, x_nhwc, _ = inputs(6)
  model, variables = models.from_torch_state_dict("ststnet", sd, features=16, pool_size=1)
  logits = np.asarray(model.apply(variables, x_nhwc, train=False))
  expected, _ = np_forward(sd, x_nchw, False)
  np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-9)
  assert variables["params"]["fc"]["kernel"].dtype == np.float64


def test_importer_names_bad_keys():
  sd = random_state_dict()
  sd["conv4.weight"] = np.zeros((1, 3, 3, 3))
  del sd["bn2.running_var"]
  sd["fc.weight"] = np.zeros((3, 401))
  with pytest.raises(errors.UserError) as raised:
    models.from_torch_state_dict("ststnet", sd, features=16, pool_size=1)
  for named in ("unknown key 'conv4.weight'", "'fc.weight' has shape (3, 401)", "missing keys ['bn2.running_var']"):
    assert named in str(raised.value)
