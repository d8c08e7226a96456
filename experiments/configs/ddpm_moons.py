"""DDPM on two moons (2-D): the ``ddpm_ring8`` recipe on a distribution without modes.

Command:
  python -m genjax.main --config=experiments/configs/ddpm_moons.py --workdir=runs/ddpm_moons
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.load_sibling(__file__, "ddpm_ring8").get_config()
  c.data.update(name="moons")
  c.evals = ""  # Mode coverage needs Gaussian modes; see images/samples.png.
  return c
