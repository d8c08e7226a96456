"""Writes samples of a trained model: ``python -m genjax.sample --workdir=runs/x --num=1000 --out=dir``.

``--workdir`` is a run directory or an exported bundle. Images go to
``out/00000.png`` ... (or one ``out/samples.npz`` with ``--format=npz``) plus
``out/grid.png``; 2-D points to ``out/samples.npz`` and a scatter plot.
Sample ``i`` depends only on ``(--seed, i)``: the same seed gives the same
files, and the same samples (to float rounding) on any number of devices and
with any ``--batch_size``.
"""

import json

import numpy as np
from absl import app, flags

from genjax.run import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory or exported bundle.")
_OUT = flags.DEFINE_string("out", None, "Output directory.")
_NUM = flags.DEFINE_integer("num", 64, "Number of samples.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Sample seed (sample i depends only on seed and i).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step of a run (default: newest).")
_FORMAT = flags.DEFINE_enum("format", "png", ["png", "npz"], "One PNG per image, or one .npz.")
_BATCH = flags.DEFINE_integer("batch_size", None, "Samples per round over all devices.")
_LABEL = flags.DEFINE_integer("label", None, "Class of every sample (conditional models).")
_SAMPLER = flags.DEFINE_string("sampler", None, "Diffusion sampler: ddpm or ddim.")
_STEPS = flags.DEFINE_integer("sample_steps", None, "DDIM steps.")
_ETA = flags.DEFINE_float("eta", None, "DDIM eta (0 deterministic, 1 DDPM-like).")
_GUIDANCE = flags.DEFINE_float("guidance_scale", None, "Classifier-free guidance scale.")
_SET = flags.DEFINE_multi_string(
  "set", [], "Another option of the family's config sections, name=value (repeatable)."
)
flags.mark_flags_as_required(["workdir", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from genjax.evaluation import images as image_io
  from genjax.run import trained, writers  # After flag parsing: --help stays fast.

  writers.configure_logging()
  options = {
    flag.name: flag.value for flag in (_SAMPLER, _STEPS, _ETA, _GUIDANCE) if flag.value is not None
  }
  for item in _SET.value:
    name, sep, value = item.partition("=")
    if not sep:
      cli.fail(f"genjax.sample: --set={item}: expected name=value")
    options[name] = value
  try:
    model = trained.load(_WORKDIR.value, _STEP.value)
    x = model.sample(
      _NUM.value,
      seed=_SEED.value,
      labels=_LABEL.value,
      batch_size=_BATCH.value,
      progress=True,
      **options,
    )
  except (FileNotFoundError, ValueError) as e:
    cli.fail(f"genjax.sample: {e}", e)
  out = trained.checkpoint_lib.as_path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  if model.data.kind != "image":
    np.savez(out / "samples.npz", points=x)
    image_io.scatter_png(out / "samples.png", x, model.data.modes, title=f"{len(x)} samples")
  elif _FORMAT.value == "npz":
    np.savez(out / "samples.npz", images=image_io.to_uint8(x))
  else:
    for i, image in enumerate(x):
      image_io.save_png(out / f"{i:05d}.png", image)
  if model.data.kind == "image":
    image_io.save_png(out / "grid.png", image_io.readable(model.family.grid(x[:64], 8)))
  print(
    json.dumps(
      {
        "model": repr(model),
        "samples": len(x),
        "seed": _SEED.value,
        "options": options,
        "out": str(out),
      }
    )
  )


def run():
  """Console entry point ``genjax-sample``."""
  app.run(main, flags_parser=cli.help_parser(__name__))


if __name__ == "__main__":
  run()
