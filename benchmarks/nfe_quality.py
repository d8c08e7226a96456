"""Sample quality against network evaluations (NFE) for every sampler of a diffusion run.

Each setting is scored by ``genjax.evaluate`` (the run's own sample metrics, floors
and protocol: the same samples for the same seed); the NFE per sample comes from the
sampler itself (``generate(..., return_nfe=True)``), measured for the adaptive solver.

  python benchmarks/nfe_quality.py --workdir=runs/sde_vp_moons --num_generated=2500
  python benchmarks/nfe_quality.py --workdir=runs/ddpm_mnist --num_generated=1000

Writes ``<out>/nfe_quality.json``, ``<out>/nfe_quality.png`` and prints a Markdown table.
"""

import json
import pathlib
import subprocess
import sys
import time

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", None, "Diffusion run directory.", required=True)
_NUM = flags.DEFINE_integer("num_generated", 1000, "Samples per setting.")
_OUT = flags.DEFINE_string("out", None, "Output dir (default: <workdir>/nfe_quality).")
_NFE_SAMPLES = flags.DEFINE_integer("nfe_samples", 500, "Samples whose NFE is counted.")
_ONLY = flags.DEFINE_list("only", [], "Labels of the settings to run (default: all).")
_REPLOT = flags.DEFINE_bool("replot", False, "Redraw the plot and table from the saved JSON.")

# (label, sampler options); T = the run's diffusion.num_steps.
SETTINGS = [
  ("DDPM", {"sampler": "ddpm"}),
  *[(f"DDIM {s}", {"sampler": "ddim", "sample_steps": s}) for s in (10, 20, 50, 100)],
  *[(f"SDE {s}", {"sampler": "sde", "sample_steps": s}) for s in (100, 500)],
  ("PC 100", {"sampler": "pc", "sample_steps": 100}),
  *[(f"ODE Heun {s}", {"sampler": "ode_heun", "sample_steps": s}) for s in (10, 20, 50)],
  *[
    (f"ODE adaptive {tol:g}", {"sampler": "ode_adaptive", "ode_rtol": tol, "ode_atol": tol})
    for tol in (1e-2, 1e-3, 1e-5)
  ],
]
# The metric plotted, by data kind: lower is better for both.
PLOTTED = {"points": "energy_distance_points", "image": "fid_lenet"}


def _evaluate(workdir: str, options: dict, out: pathlib.Path) -> dict:
  sets = [f"--set=diffusion.{k}={v}" for k, v in options.items()]
  command = [
    sys.executable, "-m", "genjax.evaluate", f"--workdir={workdir}", "--notest_metrics",
    f"--num_generated={_NUM.value}", f"--output={out}", *sets,
  ]  # fmt: skip
  subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
  return json.loads(out.read_text())


def _nfe(model, options: dict) -> tuple[float, float, float]:
  """Mean, min and max score evaluations per sample of ``options``."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  family = model._family(options)  # pylint: disable=protected-access
  n = _NFE_SAMPLES.value
  keys = jax.random.split(jax.random.key(model.config.seed), n)
  labels = jnp.arange(n, dtype=jnp.int32) % max(model.data.num_classes, 1)
  run = jax.jit(
    lambda p, k, y: family.generate(p, k, y, sampler=options["sampler"], return_nfe=True)
  )
  counts = np.concatenate(
    [
      np.asarray(run(model.params, keys[i : i + 250], labels[i : i + 250])[1])
      for i in range(0, n, 250)
    ]
  )
  return float(counts.mean()), float(counts.min()), float(counts.max())


def main(argv):
  del argv
  from absl import logging

  logging.set_verbosity(logging.WARNING)  # Orbax's INFO lines on every restore.
  import genjax  # After flag parsing: the import is slow.

  model = genjax.load(_WORKDIR.value)
  out = pathlib.Path(_OUT.value or pathlib.Path(_WORKDIR.value) / "nfe_quality")
  out.mkdir(parents=True, exist_ok=True)
  metric = PLOTTED[model.data.kind]
  if _REPLOT.value:
    rows = json.loads((out / "nfe_quality.json").read_text())
    _plot(rows, metric, model, out / "nfe_quality.png")
    _table(rows, metric)
    return
  rows = []
  for label, options in SETTINGS:
    if _ONLY.value and label not in _ONLY.value:
      continue
    if options["sampler"] == "ddim" and options["sample_steps"] > model.config.diffusion.num_steps:
      continue
    start = time.perf_counter()
    report = _evaluate(_WORKDIR.value, options, out / f"{label.replace(' ', '_')}.json")
    seconds = time.perf_counter() - start
    nfe = _nfe(model, options)
    values = report["metrics"] if "metrics" in report else report
    row = {"label": label, "options": options, "nfe": nfe[0], "nfe_min": nfe[1], "nfe_max": nfe[2]}
    row.update({k: v for k, v in values.items() if isinstance(v, (int, float))})
    row["seconds"] = seconds
    rows.append(row)
    print(
      f"{label}: nfe {nfe[0]:.0f}, {metric} {row.get(f'eval/{metric}', row.get(metric))}",
      flush=True,
    )
  (out / "nfe_quality.json").write_text(json.dumps(rows, indent=1))
  _plot(rows, metric, model, out / "nfe_quality.png")
  _table(rows, metric)


def _value(row, name):
  return row.get(f"eval/{name}", row.get(name))


def _plot(rows, metric, model, path):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
  groups = {}
  for row in rows:
    groups.setdefault(
      row["label"].rsplit(" ", 1)[0] if row["label"] != "DDPM" else "DDPM", []
    ).append(row)
  for name, members in groups.items():
    members = sorted(members, key=lambda r: r["nfe"])
    ax.plot([r["nfe"] for r in members], [_value(r, metric) for r in members], "o-", label=name)
  floor = _value(rows[0], f"{metric}_floor") if rows else None
  if floor is not None:
    ax.axhline(floor, color="grey", linestyle="--", linewidth=1, label="real data (floor)")
  ax.set_xscale("log")
  # Linear near the floor (where samplers differ by sampling noise), logarithmic beyond.
  ax.set_yscale("symlog", linthresh=1e-3 if metric.endswith("points") else 10.0)
  ax.set_xlabel("network evaluations per sample (NFE)")
  ax.set_ylabel(metric)
  ax.set_title(f"{model.config.family} on {model.data.name}, step {model.step}: quality vs NFE")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path)


def _table(rows, metric):
  extra = (
    ["precision_points", "recall_points"]
    if metric.endswith("points")
    else ["precision_lenet", "recall_lenet"]
  )
  print(f"\n| sampler | NFE | {metric} | " + " | ".join(extra) + " | time |")
  print("|---|---|---|" + "---|" * len(extra) + "---|")
  for r in rows:
    nfe = f"{r['nfe']:.0f}" + (
      f" ({r['nfe_min']:.0f}–{r['nfe_max']:.0f})" if r["nfe_min"] != r["nfe_max"] else ""
    )
    cells = " | ".join(f"{_value(r, k):.3g}" for k in extra)
    print(f"| {r['label']} | {nfe} | {_value(r, metric):.4g} | {cells} | {r['seconds']:.0f} s |")


if __name__ == "__main__":
  app.run(main)
