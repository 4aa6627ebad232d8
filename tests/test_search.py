"""The bilevel search: exact hyper-gradient, step isolation, leakage-free data, ranking, outputs."""

import functools
import importlib.util
import itertools
import json
import os
import pathlib
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from configs import search as search_config  # noqa: E402  (configs/ lives beside the package)

from rcn_jax import train  # noqa: E402
from rcn_jax import run_folder, scoring
from rcn_jax.search import loop as search, bilevel, export, splits
from rcn_jax.data import Composite  # noqa: E402
from rcn_jax.models import layers, supernet  # noqa: E402


class PlantedMixture(nn.Module):
  """Two candidate branches: `signal` reads the informative row of the input, `noise` a random one."""
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x, weights, *, train, mask=None):
    def branch(rows, name):
      normalised = layers.BatchNorm(name=f"{name}_bn")(rows, train=train, mask=mask)
      return nn.Dense(3, name=name)(normalised.reshape(x.shape[0], -1))

    mixed = weights["feature"][0] * branch(x[:, :1], "signal") + weights["feature"][1] * branch(x[:, 1:], "noise")
    return nn.Dropout(self.dropout_rate, deterministic=not train)(mixed)


def planted_data(seed=0, samples=72):
  """Labels written into row 0 (a bump at column `label`); row 1 is noise. 12 subjects of 6."""
  rng = np.random.default_rng(seed)
  labels = np.arange(samples) % 3
  x = rng.normal(size=(samples, 2, 4, 3)).astype(np.float32)
  x[np.arange(samples), 0, labels] += 1.5
  groups = np.repeat([f"casme2/sub{i:02d}" for i in range(12)], samples // 12)
  return x, labels, groups


@functools.lru_cache(maxsize=None)
def planted_program(order, mixing="normalized"):
  """One program per setting, so tests share its compiled steps."""
  return bilevel.BilevelProgram(
      PlantedMixture(dropout_rate=0.2), optax.sgd(0.1, momentum=0.9),
      bilevel.make_arch_optimizer(0.05, mixing=mixing), mixing, order)


def planted_task(groups, test_subject="casme2/sub11"):
  indices = np.arange(len(groups))
  test = indices[groups == test_subject]
  train_idx, val_idx = splits.split_subjects(indices[groups != test_subject], groups, 0.3,
                                                    np.random.default_rng(0))
  return splits.SearchTask("casme2/sub11@0", "casme2/sub11", 0, train_idx, val_idx, test)


@pytest.mark.parametrize("order,mixing", [(1, "normalized"), (2, "normalized"), (2, "softmax")])
def test_planted_better_candidate_is_ranked_first(order, mixing):
  x, labels, groups = planted_data()
  task = planted_task(groups)
  program = planted_program(order, mixing)
  alphas = bilevel.init_alphas({"feature": ("signal", "noise")}, mixing)
  result = search.run_task(program, task, x, labels, search.LoopSettings(epochs=12, warmup_epochs=2, batch_size=16),
                           jax.random.key(0), alphas)
  ranked = export.rank_choices(result.weights, {"feature": ("signal", "noise")}, k=2)
  assert [choices["feature"] for _, choices in ranked] == ["signal", "noise"]
  assert result.weights["feature"][0] > 0.6
  assert result.history["feature"].shape == (13, 2)
  np.testing.assert_allclose(result.history["feature"][0], [0.5, 0.5])
  assert np.isnan(result.val_loss[:2]).all() and np.isfinite(result.val_loss[2:]).all()
  # Every index a step read: all training samples, only validation samples, never the test subject.
  np.testing.assert_array_equal(result.used_indices["train"], task.train_indices)
  assert set(result.used_indices["val"]) <= set(task.val_indices)
  assert not set(result.used_indices["val"]) & set(task.test_indices)


@pytest.mark.parametrize("order", [1, 2])
def test_architecture_and_weight_steps_touch_only_their_own_parameters(order):
  x, labels, groups = planted_data()
  program = planted_program(order, "normalized")
  alphas = bilevel.init_alphas({"feature": ("signal", "noise")}, "normalized")
  init, weight_step, arch_step, _ = program.compiled
  state = init(jax.random.key(1), jnp.asarray(x[:1]), alphas)
  state, _ = weight_step(state, _batch(x, labels, 0), jax.random.key(2))  # non-zero momentum
  after_arch, _ = arch_step(state, _batch(x, labels, 0), _batch(x, labels, 16), jax.random.key(3))
  after_weight, _ = weight_step(state, _batch(x, labels, 0), jax.random.key(3))
  for key in ("params", "batch_stats", "weight_opt_state"):
    _assert_tree_equal(after_arch[key], state[key])
  assert _tree_differs(after_arch["alphas"], state["alphas"])
  for key in ("alphas", "arch_opt_state"):
    _assert_tree_equal(after_weight[key], state[key])
  assert _tree_differs(after_weight["params"], state["params"])
  assert _tree_differs(after_weight["batch_stats"], state["batch_stats"])


def _batch(x, labels, start, size=16):
  rows = slice(start, start + size)
  return jnp.asarray(x[rows]), jnp.asarray(labels[rows]), jnp.ones(size, bool)


def _assert_tree_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for left, right in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(left, right)


def _tree_differs(a, b):
  return any(np.any(np.asarray(left) != np.asarray(right))
             for left, right in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _cross_entropy(logits, labels, valid):
  """Mean cross-entropy over the valid samples, written out (not optax's)."""
  log_probs = logits - jax.scipy.special.logsumexp(logits, axis=-1, keepdims=True)
  picked = jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
  return -jnp.sum(jnp.where(valid, picked, 0.0)) / jnp.sum(valid)


def test_second_order_hypergradient_equals_finite_differences():
  """float64, central differences of an objective written here from `module.apply` alone.

  A supernet with every kind of decision (stems of two output sizes, per-state modules with skip and
  the wide conv, gates); the unrolled step has momentum and weight decay. The objective is Eq. 8's
  normalisation, `module.apply` in training mode, a hand-written cross-entropy and the SGD update
  `w - lr * (g + wd * w + momentum * trace)`: nothing of the program's own loss or optimiser.
  """
  lr, momentum, decay = 0.5, 0.9, 5e-4
  space = supernet.SearchSpace.paper(stems=("standard", "wide", "conv5_pool"), ops=("recurrent", "shortcut_wide"),
                                     steps=2, min_steps=1)
  net = supernet.Supernet(space, 4, 2, dropout_rate=0.5)
  weight_optimizer = optax.chain(optax.add_decayed_weights(decay), optax.sgd(lr, momentum=momentum))
  program = bilevel.BilevelProgram(net, weight_optimizer, bilevel.make_arch_optimizer(0.01),
                                          "normalized", 2)
  rng = np.random.default_rng(3)
  with jax.enable_x64(True):
    alphas = {name: jnp.asarray(rng.uniform(0.5, 1.5, len(c))) for name, c in space.decisions().items()}
    # 13 px: conv5_pool gives 4x4, the other stems 5x5, so the per-size branches are exercised.
    x = jnp.asarray(rng.uniform(size=(12, 13, 13, 3)))
    labels = jnp.asarray(np.arange(12) % 3)
    train_batch = (x[:6], labels[:6], jnp.ones(6, bool))
    val_batch = (x[6:], labels[6:], jnp.asarray([True] * 5 + [False]))
    # Generic float64 values of the state's shapes, with non-zero momentum buffers.
    shapes = jax.eval_shape(program.init, jax.random.key(0), x[:1], alphas)
    state = {name: jax.tree.map(lambda a: jnp.asarray(rng.normal(scale=0.5, size=a.shape)), shapes[name])
             for name in ("params", "batch_stats", "weight_opt_state")}
    state["alphas"] = alphas
    trace = state["weight_opt_state"][1][0].trace
    key = jax.random.key(2)
    no_dropout = net.clone(dropout_rate=0.0)

    def loss(module, params, alphas, batch, rngs):
      inputs, batch_labels, valid = batch
      weights = {name: alpha / jnp.sum(alpha) for name, alpha in alphas.items()}
      logits, _ = module.apply({"params": params, "batch_stats": state["batch_stats"]}, inputs, weights,
                               train=True, mask=valid, rngs=rngs, mutable=["batch_stats"])
      return _cross_entropy(logits, batch_labels, valid)

    # Compiled without backend optimisation: compiling, not running, is what takes time here.
    fast_compile = {"xla_backend_optimization_level": 0}

    @functools.partial(jax.jit, compiler_options=fast_compile)
    def objective(alphas):
      grads = jax.grad(lambda p: loss(net, p, alphas, train_batch, {"dropout": key}))(state["params"])
      unrolled = jax.tree.map(lambda w, g, t: w - lr * (g + decay * w + momentum * t), state["params"], grads, trace)
      return loss(no_dropout, unrolled, alphas, val_batch, {})

    value, grads = jax.jit(program.hypergradient, compiler_options=fast_compile)(state, train_batch, val_batch, key)
    np.testing.assert_allclose(value, objective(state["alphas"]), rtol=1e-12)
    eps = 1e-6
    for name, alpha in state["alphas"].items():
      for index in range(alpha.shape[0]):
        shifted = lambda sign: objective({**state["alphas"], name: alpha.at[index].add(sign * eps)})
        numeric = (shifted(1) - shifted(-1)) / (2 * eps)
        np.testing.assert_allclose(grads[name][index], numeric, rtol=1e-6, err_msg=f"{name}[{index}]")


def test_collapsed_decisions_export_the_per_decision_argmax_as_valid_json(tmp_path):
  """Every non-none gate weight exactly 0: no gate wins, and a forced gate does not decide the stem."""
  space = supernet.SearchSpace.paper(stems=("standard", "wide"), steps=1, min_steps=1, max_hops=1)
  decisions = space.decisions()
  weights = {"stem": np.asarray([0.3, 0.7])}
  weights.update({name: np.asarray([1.0] + [0.0] * (len(c) - 1)) for name, c in decisions.items() if name != "stem"})
  (score, best), = export.rank_choices(weights, decisions, k=1)
  assert best == {"stem": "wide", **{name: "none" for name in decisions if name != "stem"}}
  np.testing.assert_allclose(score, np.log(0.7))
  # A bound that forces a zero-weight gate: the stem is still the argmax of its own weights, and
  # the score is -inf, which the search writes as null.
  forced = export.rank_choices(weights, decisions, k=3, min_gates=1)
  assert [choice["stem"] for _, choice in forced] == ["wide"] * 3
  assert all(score == -np.inf for score, _ in forced)
  # Exact ties go to the simpler candidate, whatever the order of the candidates.
  tied = {"stem": np.asarray([0.5, 0.5]), **{n: w for n, w in weights.items() if n != "stem"}}
  for order in (("standard", "wide"), ("wide", "standard")):
    (_, choice), = export.rank_choices(tied, {**decisions, "stem": order}, k=1)
    assert choice["stem"] == "standard"
  assert export.tied_decisions(tied, decisions) == {"stem": ["standard", "wide"]}
  architecture = supernet.Architecture.from_choices(space, forced[0][1])
  path = export.write_configs(str(tmp_path), [(forced[0][0], architecture)], {
      "features": 4, "pool_size": 2, "dropout_rate": 0.5, "pytorch_bn": True}, {}, "once (test subjects seen)",
      "note")[0]
  assert "-inf (a zero-weight pick was forced)" in pathlib.Path(path).read_text()
  with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
    run_folder.write_json(str(tmp_path / "bad.json"), {"score": -np.inf}, strict=True)


def test_eq8_weights_have_no_dead_state():
  """Alphas pushed below the floor stop at it, and a decision with every alpha there still moves."""
  optimizer = bilevel.make_arch_optimizer(0.5, weight_decay=0.0, floor=0.01)
  alphas = {"d": jnp.asarray([1.0, 1.0, 1.0])}
  state = optimizer.init(alphas)
  for _ in range(20):  # a gradient that pushes every alpha down
    updates, state = optimizer.update({"d": jnp.ones(3)}, state, alphas)
    alphas = optax.apply_updates(alphas, updates)
  np.testing.assert_allclose(alphas["d"], [0.01] * 3)
  weights = lambda a: bilevel.mixing_weights({"d": a}, "normalized")["d"]
  np.testing.assert_allclose(weights(alphas["d"]), [1 / 3] * 3)
  # The weights still depend on every alpha: a loss on candidate 0's weight has a live gradient.
  gradient = jax.grad(lambda a: -weights(a)[0])(alphas["d"])
  assert gradient[0] < 0 < gradient[1]
  updates, state = optimizer.update({"d": gradient}, state, alphas)
  revived = optax.apply_updates(alphas, updates)["d"]
  assert revived[0] > 0.01 and weights(revived)[0] > 1 / 3


def fake_subjects():
  """3 datasets with 4, 3 and 1 subjects of 3 samples each."""
  subjects = [f"sub{i:02d}" for i in range(1, 5)] + ["s01", "s02", "s03"] + ["006"]
  datasets = ["casme2"] * 4 + ["smic"] * 3 + ["samm"]
  return np.repeat(subjects, 3), np.repeat(datasets, 3)


def test_nested_tasks_never_hold_their_test_subject():
  subjects, datasets = fake_subjects()
  groups = splits.subject_groups(subjects, datasets)
  tasks = splits.make_tasks(subjects, datasets, mode="nested", protocol="loso", max_folds=0,
                                   seeds=(0, 1), val_fraction=0.3)
  assert len(tasks) == 16
  for task in tasks:
    test_subjects = set(groups[task.test_indices])
    assert test_subjects == {task.fold}
    assert not test_subjects & set(groups[task.train_indices]) and not test_subjects & set(groups[task.val_indices])
    assert not set(groups[task.train_indices]) & set(groups[task.val_indices])
    assert sorted(np.concatenate([task.train_indices, task.val_indices, task.test_indices])) == list(range(24))
    # Stratified: every dataset with two or more training subjects gives one to validation.
    assert {g.partition("/")[0] for g in groups[task.val_indices]} == {"casme2", "smic"}
  (once,) = splits.make_tasks(subjects, datasets, mode="once", protocol="loso", max_folds=0, seeds=(0,),
                                     val_fraction=0.3)
  assert once.test_indices.size == 0 and once.fold is None
  assert len(once.train_indices) + len(once.val_indices) == 24
  leaking = splits.SearchTask("bad", "casme2/sub01", 0, np.arange(3, 12), np.arange(12, 24), np.arange(0, 4))
  with pytest.raises(AssertionError, match=r"test samples \[3\] in the training split"):
    splits.check_task(leaking, groups)
  with pytest.raises(ValueError, match="search.mode='twice'"):
    splits.make_tasks(subjects, datasets, mode="twice", protocol="loso", max_folds=0, seeds=(0,),
                             val_fraction=0.3)


def test_a_batch_with_a_test_sample_is_refused():
  x, labels, groups = planted_data()
  task = planted_task(groups)
  with_test_sample = np.concatenate([task.train_indices, task.test_indices[:1]])
  leaking = splits.SearchTask(task.name, task.fold, 0, with_test_sample, task.val_indices, task.test_indices)
  with pytest.raises(AssertionError, match="a search batch holds test samples"):
    search.run_task(planted_program(1, "normalized"), leaking, x, labels, search.LoopSettings(1, 0, 16),
                    jax.random.key(0), bilevel.init_alphas({"feature": ("signal", "noise")}, "normalized"))


def test_ranking_is_the_exact_top_k_under_a_gate_budget():
  rng = np.random.default_rng(4)
  decisions = {"stem": ("standard", "wide"), "gate_stem": ("none", "input"),
               "gate_state_0": ("none", "input", "stem"), "gate_output": ("none", "input", "stem", "state_0")}
  weights = {name: rng.dirichlet(np.ones(len(c))) for name, c in decisions.items()}
  for min_gates, max_gates in ((0, -1), (0, 0), (0, 1), (1, 1), (1, 2), (2, -1), (3, 3)):
    brute = []
    for picks in itertools.product(*(range(len(c)) for c in decisions.values())):
      choice = {name: decisions[name][i] for name, i in zip(decisions, picks)}
      gates = sum(name.startswith("gate_") and label != "none" for name, label in choice.items())
      if min_gates <= gates and (max_gates < 0 or gates <= max_gates):
        brute.append((sum(np.log(weights[n][i]) for n, i in zip(decisions, picks)), choice))
    brute.sort(key=lambda e: -e[0])
    ranked = export.rank_choices(weights, decisions, k=5, max_gates=max_gates, min_gates=min_gates)
    assert [c for _, c in ranked] == [c for _, c in brute[:5]]
    np.testing.assert_allclose([s for s, _ in ranked], [s for s, _ in brute[:5]])
  with pytest.raises(ValueError, match="search.min_gates=2, search.max_gates=1"):
    export.rank_choices(weights, decisions, k=1, max_gates=1, min_gates=2)


def tiny_composite():
  subjects, datasets = fake_subjects()
  rng = np.random.default_rng(0)
  labels = np.tile([0, 1, 2], 8)
  flows = 0.5 * rng.random((24, 12, 12, 3)) + 0.25 * labels[:, None, None, None]
  return Composite(flows=flows.astype(np.float32), labels=labels, subjects=subjects, datasets=datasets,
                   samples=np.array([f"clip{i:02d}" for i in range(24)]))


def tiny_search_config():
  """A nested search over two folds in a small space (a smaller program compiles faster)."""
  config = search_config.get_config("smoke,mode=nested")
  config.model.features = 4
  config.model.pool_size = 2
  config.data.resolution = 12
  config.protocol.max_folds = 2
  config.train.batch_size = 8
  config.search.stems = ("standard",)
  config.search.steps = 2
  config.search.min_steps = 1
  config.search.max_hops = 1
  config.search.gate_output = False
  config.search.top_k = 3
  return config


def test_search_writes_its_outputs_and_the_top1_config_trains(tmp_path):
  config = tiny_search_config()
  summary = search.run_search(config, str(tmp_path / "search"), composite=tiny_composite())
  folder = tmp_path / "search"
  for name in ("architecture_weights.json", "architecture_weights.csv", "architecture_weights.png",
               "architecture_weights_history.png", "search.json"):
    assert (folder / name).stat().st_size > 0, name
  table = json.loads((folder / "architecture_weights.json").read_text())
  decisions = search.make_space(config.search).decisions()
  assert [(r["decision"], r["candidate"]) for r in table["weights"]] == [
      (name, c) for name, candidates in decisions.items() for c in candidates]
  for name in decisions:
    np.testing.assert_allclose(sum(r["weight"] for r in table["weights"] if r["decision"] == name), 1.0, rtol=1e-5)
  assert [t["name"] for t in summary["tasks"]] == ["casme2/sub01@0", "casme2/sub02@0"]
  for task in summary["tasks"]:
    assert task["test_subjects"] == [task["name"].split("@")[0]]
    assert not set(task["test_subjects"]) & (set(task["train_subjects"]) | set(task["val_subjects"]))
    assert len(task["train_loss"]) == 2 and task["val_loss"][0] is None and task["val_loss"][1] is not None
  assert len(summary["ranked"]) == 3
  assert summary["timings"]["search_s"] > 0
  assert summary["cost"]["flops"] > summary["cost"]["flops_per_arch_step"] > 0
  # Strictly valid JSON: no NaN or Infinity anywhere.
  json.loads((folder / "search.json").read_text(), parse_constant=_refuse)

  trained = _load_config(folder / "architectures" / "top1.py", "smoke")
  assert trained.model.preset == summary["ranked"][0]["architecture"]
  assert (trained.model.features, trained.data.resolution) == (4, 12)
  trained.protocol.max_folds = 1
  _small_run(trained)
  results = train.train_and_evaluate(trained, str(tmp_path / "train"), composite=tiny_composite())
  assert 0.0 <= results["uf1"] <= 1.0
  assert os.path.getsize(tmp_path / "train" / "predictions.csv") > 0
  # A nested search's top-k rank on the mean over folds: every test subject weighed in.
  assert results["selection"]["search"] == "nested mean over folds (test subjects seen)"
  assert results["selection"]["search_workdir"] == str(folder)

  # The honest protocol: each fold trains its own fold's architecture; folds with different
  # architectures train as separate programs, and the results say `nested`.
  per_fold = _load_config(folder / "architectures" / "per_fold.py", "smoke")
  assert dict(per_fold.selection.fold_architectures) == summary["per_fold"]["architectures"]
  first, second = supernet.Architecture("standard", ("recurrent",)), supernet.Architecture(
      "standard", ("recurrent", "shortcut"), (("state_0", "stem"),))
  per_fold.selection.fold_architectures = (("casme2/sub01", first.encode()), ("casme2/sub02", second.encode()))
  _small_run(per_fold)
  results = train.train_and_evaluate(per_fold, str(tmp_path / "nested"), composite=tiny_composite())
  assert results["selection"]["search"] == "nested"
  assert results["selection"]["architectures"] == {first.encode(): ["casme2/sub01"], second.encode(): ["casme2/sub02"]}
  assert results["execution"]["programs"] == 2
  assert sorted(results["per_fold_accuracy"]) == ["casme2/sub01", "casme2/sub02"]
  for index in range(2):  # each program checkpoints in its own folder
    assert (tmp_path / "nested" / f"architecture_{index}" / "checkpoints").is_dir()
  assert "architecture selection: search: nested (" in scoring.summary_table(results)


def _refuse(constant):
  raise ValueError(f"not JSON: {constant}")


def _load_config(path, arg):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _small_run(config):
  config.train.num_epochs = 1
  config.train.batch_size = 32
  config.parallel.strategy = "loop"
  config.parallel.models_per_call = 1
  config.report.bootstrap_resamples = 10
