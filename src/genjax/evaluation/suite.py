"""Sample-quality evaluation: generate, embed, compare with real data and its floor.

``config.evals`` names the metrics of an experiment (comma-separated):

=========================  ==================================================================
name                       reports (``eval/...``)
=========================  ==================================================================
fid_lenet                  ``fid_lenet``: Fréchet distance on the domain classifier's features
kid_lenet                  ``kid_lenet`` (± ``kid_lenet_std``): unbiased KID, cubic kernel
precision_recall_lenet     ``precision_lenet``, ``recall_lenet``: k-NN manifolds, k = 3
classifier_score_lenet     ``classifier_score_lenet``: Inception-Score analogue
label_accuracy             ``label_accuracy``: share of class-conditional samples classified
                           as the label they were asked for
mode_coverage              ``modes_captured``, ``high_quality``, ``mode_js`` (2-D mixtures,
                           PacGAN protocol) and ``images/samples_over_modes.png``
precision_recall_points    ``precision_points``, ``recall_points``: k-NN manifolds of 2-D points
energy_distance_points     ``energy_distance_points``: energy distance of 2-D points (any shape)
``*_inception``            the same four on FID Inception-v3 features (weights file needed)
=========================  ==================================================================

Every metric comes with its **real-vs-real floor** (``<metric>_floor``): the
same metric between ``N`` training examples and the ``N`` test examples the
samples are compared with — what a perfect model would score at this sample
count. ``N`` (``eval/num_generated``) is ``config.eval.sample_examples`` for
``genjax.evaluate`` and ``config.eval.periodic_sample_examples`` during
training, capped by the test split's size. The reference set is always the
first ``N`` test examples, as stored (uint8 scaled to [0, 1], never binarized);
generated samples are the family's mean images mapped to [0, 1]. Sample ``i``
uses the key ``fold_in(sample_stream, i)`` and, for class-conditional models,
the label ``i mod num_classes``, so the numbers are reproducible and
independent of the device count and batch size.
"""

import dataclasses
import logging
import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from genjax.core import random as genjax_random
from genjax.core.parallel import AXIS
from genjax.data import pipeline, sources
from genjax.evaluation import images as image_io
from genjax.evaluation import metrics as metrics_lib

log = logging.getLogger("genjax")


@dataclasses.dataclass(frozen=True)
class EvalSpec:
  """One selectable entry of ``config.evals``.

  Attributes:
    kind: fid | kid | precision_recall | classifier_score | label_accuracy | mode_coverage
      | energy_distance.
    net: feature net it runs on ("lenet", "inception"), "points" for the 2-D coordinates
      themselves, or None (mode coverage).
  """

  kind: str
  net: str | None


EVALS: dict[str, EvalSpec] = {"mode_coverage": EvalSpec("mode_coverage", None)}
for _net in ("lenet", "inception"):
  for _kind in ("fid", "kid", "precision_recall", "classifier_score"):
    EVALS[f"{_kind}_{_net}"] = EvalSpec(_kind, _net)
EVALS["label_accuracy"] = EvalSpec("label_accuracy", "lenet")
# On 2-D points the coordinates themselves are the features.
EVALS["precision_recall_points"] = EvalSpec("precision_recall", "points")
EVALS["energy_distance_points"] = EvalSpec("energy_distance", "points")

# Feature widths, known before any net is built (checked against sample counts).
FEATURE_DIMS = {"lenet": 128, "inception": 2048}
# Fixed protocol constants, stated in every report.
PR_NEIGHBOURS = 3
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000
SCORE_SPLITS = 10
HIGH_QUALITY_SIGMAS = 3.0
_FLOOR_SEED = 12345  # Which training examples form the floor's real set.


def parse_evals(text: str) -> tuple[str, ...]:
  """``"fid_lenet, kid_lenet"`` -> ``("fid_lenet", "kid_lenet")`` (order kept, no repeats)."""
  names = [n.strip() for n in str(text or "").split(",")]
  return tuple(dict.fromkeys(n for n in names if n))


def config_errors(c) -> list[str]:
  """Config-level problems with ``config.evals`` ("config.field=value: why")."""
  names = parse_evals(c.evals)
  unknown = [n for n in names if n not in EVALS]
  errors = []
  if unknown:
    errors.append(
      f"config.evals={c.evals!r}: unknown {', '.join(unknown)}; allowed: {', '.join(EVALS)}"
    )
  known = [n for n in names if n in EVALS]
  points = c.data.name in sources.POINT_DATASETS
  for name in known:
    spec = EVALS[name]
    if points and spec.net not in (None, "points"):
      errors.append(
        f"config.evals={c.evals!r}: {name} needs images; {c.data.name!r} holds 2-D points "
        "(use mode_coverage, precision_recall_points or energy_distance_points)"
      )
    if not points and spec.net == "points":
      errors.append(
        f"config.evals={c.evals!r}: {name} compares 2-D points "
        f"({', '.join(sorted(sources.POINT_DATASETS))}), not {c.data.name!r}"
      )
    if spec.kind == "fid":
      dim = FEATURE_DIMS[spec.net]
      for field in ("sample_examples", "periodic_sample_examples"):
        n = c.eval[field]
        if isinstance(n, int) and n <= dim:
          errors.append(
            f"config.eval.{field}={n!r}: {name} needs more samples than its {dim} feature "
            f"dimensions (at least {dim + 1})"
          )
  if "mode_coverage" in known and not points:
    errors.append(
      f"config.evals={c.evals!r}: mode_coverage needs a 2-D mixture "
      f"({', '.join(sorted(sources.POINT_DATASETS))}), not {c.data.name!r}"
    )
  return errors


def compatibility_errors(evals, family, dataset) -> list[str]:
  """Problems only visible once family and data are built."""
  errors = []
  if evals and not family.can_sample:
    errors.append(
      f"config.evals={','.join(evals)!r}: family {family.config.family!r} does not "
      "generate samples; sample metrics need a generative family"
    )
  needs_labels = [n for n in evals if EVALS[n].net == "lenet"]
  if needs_labels and dataset.num_classes <= 1:
    errors.append(
      f"config.evals: {', '.join(needs_labels)} need a labelled dataset to train the "
      f"domain classifier; {dataset.name!r} has no labels (use *_inception metrics)"
    )
  if "label_accuracy" in evals and not family.conditional:
    errors.append(
      "config.evals: label_accuracy needs a class-conditional model "
      "(e.g. family 'cvae' or config.model.conditional=True)"
    )
  if "mode_coverage" in evals and dataset.modes is None:
    errors.append(f"config.evals: mode_coverage needs a dataset with known modes; {dataset.name!r}")
  return errors


def _gather(tree):
  return jax.tree.map(lambda v: lax.all_gather(v, AXIS, tiled=True), tree)


class SampleEvaluator:
  """Runs ``config.evals`` for an experiment; real-data features are computed once.

  Args:
    config: the experiment config.
    dataset: its dataset.
    family: its family (``can_sample``).
    parallel: its :class:`~genjax.core.parallel.DataParallel`.
  """

  def __init__(self, config, dataset, family, parallel):
    self.config, self.dataset, self.family, self.parallel = config, dataset, family, parallel
    self.evals = parse_evals(config.evals)
    nets = (EVALS[n].net for n in self.evals)
    self.net_names = tuple(dict.fromkeys(n for n in nets if n not in (None, "points")))
    self.nets: dict[str, Any] = {}
    self._real: dict[tuple[str, int], dict] = {}
    self._floors: dict[int, dict[str, float]] = {}
    self._sample_fn: Callable | None = None
    self._embed_fn: Callable | None = None

  def __bool__(self) -> bool:
    return bool(self.evals)

  def count(self, requested: int) -> int:
    """Samples compared for a requested count: capped by the test and train splits."""
    data = self.dataset
    return int(min(requested, len(data.test["label"]), len(data.train["label"])))

  def check_files(self) -> None:
    """Raises FileNotFoundError (saying how to get it) if a weights file is missing."""
    from genjax.evaluation import inception

    if "inception" in self.net_names:
      path = inception.weights_path(self.config.eval.inception_weights)
      if path is None or not path.is_file():
        inception.load(path)  # Raises with the instructions.

  def load_nets(self, progress: bool = False) -> None:
    """Loads (or trains once and caches) the feature nets the metrics need."""
    from genjax.evaluation import feature_net, inception

    ec = self.config.eval
    for name in self.net_names:
      if name in self.nets:
        continue
      if name == "lenet":
        training = feature_net.TRAINING
        if ec.feature_net_steps:
          training = dataclasses.replace(training, max_steps=ec.feature_net_steps)
        self.nets[name] = feature_net.load_or_train(
          self.dataset, seed=ec.feature_net_seed, training=training, progress=progress
        )
      else:
        self.nets[name] = inception.load(inception.weights_path(ec.inception_weights))

  def prepare(self, counts, progress: bool = False) -> None:
    """Loads nets and computes real features and floors for each sample count."""
    self.load_nets(progress)
    for n in counts:
      floors = self.floors(self.count(n))
      log.info("real-vs-real floor at N=%d: %s", self.count(n), _brief(floors))

  # -- real data --------------------------------------------------------------

  def _embed_compiled(self):
    if self._embed_fn is None:

      def embed(net_vars, batch):
        unit = batch["image"].astype(jnp.float32) / 255.0
        return _gather(dict(self._features(net_vars, unit), mask=batch["mask"]))

      self._embed_fn = self.parallel.compile(embed)
    return self._embed_fn

  def _features(self, net_vars, unit) -> dict[str, jax.Array]:
    out = {}
    for name, net in self.nets.items():
      out[f"features_{name}"], out[f"logits_{name}"] = net.apply_with(net_vars[name], unit)
    return out

  def _net_vars(self):
    return {name: net.variables for name, net in self.nets.items()}

  def _run(self, fn, replicated, arrays: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Runs a gathered per-example function over ``n`` examples; host arrays ``[n, ...]``."""
    batches = pipeline.eval_batches(
      arrays,
      batch_size=self.config.eval.batch_size,
      num_examples=n,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
    )
    outputs = []
    replicated = self.parallel.put_replicated(replicated)
    for batch in batches:
      out = self.parallel.get_replicated(fn(replicated, self.parallel.put_batch(batch)))
      out = jax.device_get(out)
      keep = out.pop("mask") > 0
      outputs.append({k: np.asarray(v)[keep] for k, v in out.items()})
    return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}

  def real(self, split: str, n: int) -> dict[str, np.ndarray]:
    """Features/logits (images) or points of ``n`` real examples of ``split``.

    ``test``: the first ``n`` test examples (the reference set); ``train``: a
    fixed random subset of ``n`` training examples (the floor's real set).
    """
    if (split, n) in self._real:
      return self._real[(split, n)]
    data = self.dataset.test if split == "test" else self.dataset.train
    if split == "train":
      order = np.random.default_rng(_FLOOR_SEED).permutation(len(data["label"]))[:n]
      data = {k: v[order] for k, v in data.items()}
    if self.dataset.kind == "points":
      out = {"points": data["points"][:n], "label": data["label"][:n]}
    else:
      arrays = {"image": data["image"]}
      out = self._run(self._embed_compiled(), self._net_vars(), arrays, n)
      out["label"] = data["label"][:n]
    self._real[(split, n)] = out
    return out

  def floors(self, n: int) -> dict[str, float]:
    """The real-vs-real value of every metric at ``n`` examples (cached)."""
    if n not in self._floors:
      real = self.real("test", n)
      train = self.real("train", n)
      values = self._compare(train, real, floor=True)
      self._floors[n] = {f"{k}_floor": v for k, v in values.items() if not k.endswith("_std")}
    return self._floors[n]

  # -- generated data ---------------------------------------------------------

  def _sample_compiled(self):
    if self._sample_fn is None:
      key = genjax_random.stream_key(self.config.seed, genjax_random.SAMPLE_STREAM)
      images = self.dataset.kind == "image"

      def generate(replicated, batch):
        params, net_vars = replicated
        keys = genjax_random.example_keys(key, batch["index"])
        x = self.family.sample(params, keys, batch["label"])
        out = {"mask": batch["mask"], "label_asked": batch["label"]}
        if images:
          out.update(self._features(net_vars, self.family.to_unit(x)))
        else:
          out["points"] = x
        return _gather(out)

      self._sample_fn = self.parallel.compile(generate)
    return self._sample_fn

  def generate(self, params, n: int) -> dict[str, np.ndarray]:
    """Draws ``n`` samples (balanced labels) and embeds them; host arrays."""
    num_classes = max(self.dataset.num_classes, 1)
    labels = (np.arange(n) % num_classes).astype(np.int32)
    return self._run(self._sample_compiled(), (params, self._net_vars()), {"label": labels}, n)

  def __call__(
    self, params, num_generated: int, image_dir: pathlib.Path | None = None
  ) -> tuple[dict[str, float], dict]:
    """Evaluates ``params``: ``(metrics without prefix, report)``.

    Args:
      params: parameters to sample with (EMA parameters where kept).
      num_generated: requested number of samples (capped, see :meth:`count`).
      image_dir: where to draw pictures (mode coverage), or None.
    """
    n = self.count(num_generated)
    self.load_nets()
    fake = self.generate(params, n)
    values = self._compare(fake, self.real("test", n))
    values.update(self.floors(n))
    values["num_generated"] = float(n)
    if image_dir is not None and "mode_coverage" in self.evals and jax.process_index() == 0:
      self._scatter(fake["points"], values, image_dir / "samples_over_modes.png")
    return values, self.report(n)

  def _compare(self, fake: dict, real: dict, floor: bool = False) -> dict[str, float]:
    out = {}
    for name in self.evals:
      spec = EVALS[name]
      if spec.kind == "mode_coverage":
        cover = metrics_lib.mode_coverage(
          fake["points"], self.dataset.modes, self.dataset.mode_std, threshold=HIGH_QUALITY_SIGMAS
        )
        out.update({k: cover[k] for k in ("modes_captured", "high_quality", "mode_js")})
        continue
      key = "points" if spec.net == "points" else f"features_{spec.net}"
      f, r = fake[key], real[key]
      if spec.kind == "energy_distance":
        out[name] = metrics_lib.energy_distance(f, r)
      elif spec.kind == "fid":
        out[name] = metrics_lib.frechet_distance(f, r)
      elif spec.kind == "kid":
        mean, std = metrics_lib.kernel_inception_distance(
          f, r, num_subsets=KID_SUBSETS, subset_size=KID_SUBSET_SIZE, seed=0
        )
        out[name], out[f"{name}_std"] = mean, std
      elif spec.kind == "precision_recall":
        pr = metrics_lib.precision_recall(r, f, k=PR_NEIGHBOURS)
        out[f"precision_{spec.net}"], out[f"recall_{spec.net}"] = pr["precision"], pr["recall"]
      elif spec.kind == "classifier_score":
        # The floor of a score is the score of the real reference set itself.
        logits = real if floor else fake
        mean, std = metrics_lib.classifier_score(
          logits[f"logits_{spec.net}"], num_splits=SCORE_SPLITS
        )
        out[name], out[f"{name}_std"] = mean, std
      elif spec.kind == "label_accuracy":
        source = real if floor else fake
        asked = source["label"] if floor else fake["label_asked"]
        out[name] = metrics_lib.label_accuracy(source["logits_lenet"], asked)
    return {k: float(v) for k, v in out.items()}

  def report(self, n: int) -> dict:
    """How the numbers were computed: counts, reference split, nets, protocol."""
    name = self.dataset.name
    out = {
      "evals": list(self.evals),
      "num_generated": n,
      "reference": f"{name} test split, first {n} examples",
      "floor": f"{n} {name} training examples (fixed random subset) vs the reference",
      "sampling": f"key fold_in(sample stream of seed {self.config.seed}, i)",
    }
    sampler = self.family.sampler_description()
    if sampler:
      out["sampler"] = sampler
    if self.family.conditional:
      out["labels"] = f"sample i asks for label i mod {self.dataset.num_classes}"
    if self.nets:
      out["feature_nets"] = {k: dict(net.info) for k, net in self.nets.items()}
    kinds = {EVALS[e].kind for e in self.evals}
    if "kid" in kinds:
      out["kid"] = f"{KID_SUBSETS} subsets of min({KID_SUBSET_SIZE}, N), kernel (x.y/d + 1)^3"
    if "precision_recall" in kinds:
      out["precision_recall"] = f"k = {PR_NEIGHBOURS} nearest neighbours"
    if "energy_distance" in kinds:
      out["energy_distance"] = (
        "2 E|X-Y| - E|X-X'| - E|Y-Y'| on the 2-D points, within-set pairs distinct"
      )
    if "classifier_score" in kinds:
      out["classifier_score"] = f"exp E KL(p(y|x) || p(y)), mean over {SCORE_SPLITS} splits"
    if "mode_coverage" in kinds:
      out["mode_coverage"] = (
        f"{len(self.dataset.modes)} modes, std {self.dataset.mode_std}; high quality within "
        f"{HIGH_QUALITY_SIGMAS:g} std of the nearest mode; mode_js in bits"
      )
    return out

  def _scatter(self, points, values, path: pathlib.Path) -> None:
    title = (
      f"{int(values['modes_captured'])}/{len(self.dataset.modes)} modes, "
      f"{100 * values['high_quality']:.1f}% high quality (N={len(points)})"
    )
    image_io.scatter_png(path, points, modes=self.dataset.modes, title=title)


def _brief(metrics: dict[str, float]) -> str:
  return ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
