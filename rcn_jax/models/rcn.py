"""The RCN model: a stem, stacked recurrent layers, an adaptive-pooled head, optional attention.

The paper's networks (RCN, RCN-A/S/W/C/F/P of Sec. III and Table V, the depth study's Models 1-4
of Fig. 1) are keyword sets for this one module: `rcn_jax.models.factory.PRESETS` names them and
`create_model` builds them.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from rcn_jax import errors
from rcn_jax.models import attention, blocks, layers

Array = jax.Array

ATTENTION_MODES = (
    "none",
    "stem_to_head",  # RCN-A, RCN-P: cam_p of the pooled stem output gates the pooled layer output.
    "input_to_stem",  # RCN-C: cam_f of the pooled input, upsampled, gates the stem output.
    "embedding",  # RCN-F: cam_p of the pooled layer input gates the 1x1 branch (embedding layer).
)


class RCN(nn.Module):
  """A recurrent convolutional network for flow maps `[N, H, W, 3]` -> logits `[N, classes]`.

  Attributes:
    stem: one of `blocks.STEMS` or `conv5_pool4` (the depth study's one-conv Model 1).
    layer: `recurrent`, `shortcut` or `embedding`.
    num_layers: stacked recurrent layers (0 for Model 1).
    attention: one of `ATTENTION_MODES`.
    features: fm, the channel count of every layer.
    pool_size: P, the adaptive-average-pool output size of the head.
    num_classes: C.
    dropout_rate: dropout after the stem and after each recurrent layer.
    steps: recurrent unfoldings; None takes the layer type's official default (2 or 3).
    reuse_stream2: the official RCN-F's wide stem (stream 2 applied twice, stream 3 never).
    unbiased_running_var: PyTorch's running-variance rule in every batch norm.
  """
  stem: str
  layer: str
  num_layers: int
  attention: str
  features: int
  pool_size: int
  num_classes: int = 3
  dropout_rate: float = 0.5
  steps: int | None = None
  reuse_stream2: bool = False
  unbiased_running_var: bool = True

  def __post_init__(self):
    validate_architecture(self.stem, self.layer, self.attention, self.features, self.num_layers)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: Array, *, train: bool = False, mask: Array | None = None) -> Array:
    """Logits `[N, C]` of flow maps `x [N, H, W, 3]`; `mask [N]` excludes samples from BN statistics.

    The attention maps `[N, P, P]` are sown into the `intermediates` collection as `attention`.
    """
    fm, pool = self.features, self.pool_size
    # Declared here, not as a lazily built Dense: RCN-C reads the kernel before the stem runs.
    kernel = self.param("classifier_kernel", nn.initializers.normal(0.01),
                        (pool * pool * fm, self.num_classes), jnp.float32)
    bias = self.param("classifier_bias", nn.initializers.zeros, (self.num_classes,), jnp.float32)

    def attend(map_source: Array) -> Array:
      cam = attention.cam_p(layers.adaptive_avg_pool(map_source, pool), kernel)
      self.sow("intermediates", "attention", cam)
      return cam

    input_map = None
    if self.attention == "input_to_stem":
      input_map = attention.cam_f(layers.adaptive_avg_pool(x, pool), kernel, pool)
      self.sow("intermediates", "attention", input_map)
    y = blocks.Stem(self.stem, fm, self.dropout_rate, self.reuse_stream2,
                    self.unbiased_running_var, name="stem")(x, train=train, mask=mask)
    stem_output = y
    if input_map is not None:
      y = y * layers.upsample_nearest(input_map, y.shape[1], y.shape[2])[..., None]

    def embedding_gate(branch: Array, layer_input: Array) -> Array:
      cam = attend(layer_input)
      return branch * layers.upsample_nearest(cam, branch.shape[1], branch.shape[2])[..., None]

    steps = self.steps if self.steps is not None else blocks.DEFAULT_STEPS[self.layer]
    for index in range(self.num_layers):
      y = blocks.RecurrentLayer(self.layer, fm, self.dropout_rate, steps,
                                self.unbiased_running_var, name=f"layer_{index}")(
                                    y, train=train, mask=mask, gate=embedding_gate)
    pooled = layers.adaptive_avg_pool(y, pool)
    if self.attention == "stem_to_head":
      pooled = pooled * attend(stem_output)[..., None]
    return pooled.reshape(pooled.shape[0], -1) @ kernel + bias


def validate_architecture(stem: str, layer: str, attention_mode: str, features: int,
                          num_layers: int) -> None:
  """Raises a UserError naming the config key when an architecture cannot be built."""
  if stem not in blocks.STEMS + ("conv5_pool4",):
    raise errors.UserError(f"model.stem={stem!r}: expected one of {blocks.STEMS}")
  if layer not in blocks.LAYERS:
    raise errors.UserError(f"model.layer={layer!r}: expected one of {blocks.LAYERS}")
  if attention_mode not in ATTENTION_MODES:
    raise errors.UserError(f"model.attention={attention_mode!r}: expected one of {ATTENTION_MODES}")
  if (layer == "embedding") != (attention_mode == "embedding"):
    raise errors.UserError("model.layer='embedding' and model.attention='embedding' go together")
  if stem == "wide" and features % 4:
    raise errors.UserError(f"model.features={features}: the wide stem splits the channels 1/2, 1/4, "
                           "1/4, so features must be a multiple of 4")
  if stem == "wide_pooled" and features % 2:
    raise errors.UserError(f"model.features={features}: the wide_pooled stem splits the channels in "
                           "two halves, so features must be even")
  if features < 1:
    raise errors.UserError(f"model.features={features} must be >= 1")
  if num_layers < 0:
    raise errors.UserError(f"num_layers={num_layers}: a preset's count of recurrent layers must be >= 0")
