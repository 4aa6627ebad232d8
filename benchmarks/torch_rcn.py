"""RCN-A and RCN-F in plain PyTorch (NCHW), layer for layer the official release's classes, as a speed baseline.

Written from the official release's layer order (the behaviour of its `RCN_A` and `RCN_F`
classes), not copied. What runs in a training step is what the official
classes run:
- `RCN_A`: Conv 5x5 (3 -> fm) -> BN -> ReLU -> MaxPool 2 -> Dropout; the recurrent block (1x1
  conv -> BN -> ReLU, then the one 3x3 conv + BN + ReLU module applied twice to `x + y`) ->
  MaxPool 2 -> Dropout; adaptive average pool to P x P multiplied by the parameter-free attention
  map of the pooled stem output (read from the classifier's weight); Linear.
- `RCN_F`: the wide stem with the official quirk (stream 2's conv -> ReLU -> BN -> Dropout module
  applied twice, stream 3 never called); the embedding block (1x1 branch gated by the attention
  map of the pooled block input, then the shared 3x3 module three times over the running sum) ->
  MaxPool 2 -> Dropout; adaptive average pool; Linear.
Every conv has a bias, BN momentum 0.1, dropout 0.5, Kaiming-normal fan-out conv weights; trained
the way the official script trains: a fresh model per fold, one fold after another, SGD momentum
0.9, lr 5e-4, batch 64, cross-entropy.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ConvBN(nn.Module):
  """Conv -> BN -> ReLU, or Conv -> ReLU -> BN (the wide stem's streams)."""

  def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0,
               dilation: int = 1, relu_first: bool = False):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, dilation)
    self.bn = nn.BatchNorm2d(cout)
    self.relu_first = relu_first
    nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")

  def forward(self, x):
    x = self.conv(x)
    return self.bn(F.relu(x)) if self.relu_first else F.relu(self.bn(x))


def cam_p(pooled: torch.Tensor, weight: torch.Tensor, pool: int) -> torch.Tensor:
  """Parameter-free attention `[N, P, P]` from a pooled feature `[N, fm, P, P]` and the classifier."""
  n, fm = pooled.shape[:2]
  w = weight.view(-1, fm, pool, pool)  # [C, fm, P, P], channel-major as the flatten
  cam = (w[None] * pooled[:, None]).sum(dim=2) / fm  # [N, C, P, P]
  low = cam.amin(dim=(2, 3), keepdim=True)
  span = cam.amax(dim=(2, 3), keepdim=True) - low
  safe = torch.where(span > 0, span, torch.ones_like(span))
  cam = torch.where(span > 0, (cam - low) / safe, torch.ones_like(cam))
  return cam.mean(dim=1)


class TorchRCN(nn.Module):
  """The official `RCN_A` (`rcn_a`) or `RCN_F` (`rcn_f`, stream 2 reused) at any fm and P, input `[N, 3, 60, 60]`."""

  def __init__(self, preset: str, features: int, pool_size: int, num_classes: int = 3, dropout: float = 0.5):
    super().__init__()
    if preset not in ("rcn_a", "rcn_f"):
      raise ValueError(f"the PyTorch baseline has rcn_a and rcn_f, not {preset!r}")
    self.preset, self.pool, fm = preset, pool_size, features
    if preset == "rcn_a":
      self.stem = ConvBN(3, fm, 5)
    else:
      half, quarter = fm // 2, fm // 4
      # The official class also builds a stream 3 (dilation 3) that its forward never calls.
      self.streams = nn.ModuleList([ConvBN(3, half, 3, 3, 1, 1, True), ConvBN(3, quarter, 3, 3, 2, 2, True)])
    self.feedforward = ConvBN(fm, fm, 1)
    self.recurrent = ConvBN(fm, fm, 3, padding=1)
    self.drop = nn.Dropout(dropout)
    self.classifier = nn.Linear(fm * pool_size * pool_size, num_classes)
    nn.init.normal_(self.classifier.weight, std=0.01)
    nn.init.zeros_(self.classifier.bias)

  def forward(self, x):
    if self.preset == "rcn_a":
      stem = self.drop(F.max_pool2d(self.stem(x), 2))
      y = self.feedforward(stem)
      for _ in range(2):
        y = self.recurrent(stem + y)
      y = self.drop(F.max_pool2d(y, 2))
      pooled = F.adaptive_avg_pool2d(y, self.pool)
      attention = cam_p(F.adaptive_avg_pool2d(stem, self.pool), self.classifier.weight, self.pool)
      pooled = pooled * attention[:, None]
    else:
      stream1, stream2 = self.streams
      stem = torch.cat([self.drop(stream1(x)), self.drop(stream2(x)), self.drop(stream2(x))], dim=1)
      y = self.feedforward(stem)
      attention = cam_p(F.adaptive_avg_pool2d(stem, self.pool), self.classifier.weight, self.pool)
      y = y * F.interpolate(attention[:, None], size=y.shape[2:], mode="nearest")
      total = stem + y
      for step in range(3):
        y = self.recurrent(total)
        if step < 2:
          total = total + y
      y = self.drop(F.max_pool2d(y, 2))
      pooled = F.adaptive_avg_pool2d(y, self.pool)
    return self.classifier(pooled.flatten(1))


def train_folds_sequentially(preset: str, features: int, pool_size: int, inputs: torch.Tensor,
                             labels: torch.Tensor, train_indices: list[torch.Tensor], epochs: int, *,
                             batch_size: int = 64, learning_rate: float = 5e-4, seed: int = 0) -> float:
  """Trains one fresh model per fold, one fold after another; returns the last epoch's mean loss.

  The model lives on the device of `inputs` (a GPU when the tensors are there).
  """
  torch.manual_seed(seed)
  loss_value = float("nan")
  for indices in train_indices:
    indices = indices.to(inputs.device)
    model = TorchRCN(preset, features, pool_size).to(inputs.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9)
    model.train()
    for _ in range(epochs):
      order = indices[torch.randperm(len(indices), device=indices.device)]
      total = 0.0
      for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(inputs[batch]), labels[batch])
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(batch)
      loss_value = total / len(order)
  return loss_value
