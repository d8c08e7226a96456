"""docs/architecture.md's worked example family trains, resumes and evaluates as documented."""

import json
import pathlib
import re
import subprocess
import sys
import textwrap

REPO = pathlib.Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "architecture.md"

# Runs in its own process: registering the example must not change the suite's registry.
SCRIPT = """
import json, sys
import numpy as np
from genjax import config as config_lib
from genjax.run import evaluation, experiment, loop
from genjax.run import checkpoint as checkpoint_lib

exec(open(sys.argv[1]).read())
c = config_lib.defaults()
c.family, c.data.name = "gaussian", "ring8"
c.gaussian.init_log_std = -1.0
c.optimizer.learning_rate = 0.05
c.train.update(batch_size=256, num_steps=300, log_every=100, checkpoint_every=150)
c.train.update(eval_every=0, num_devices=2, progress_bar=False)
c.eval.update(batch_size=512, periodic_examples=2048, num_images=0)
loop.train_and_evaluate(c, sys.argv[2])
exp = experiment.build(c)
ckpt = checkpoint_lib.Checkpointer(sys.argv[2] + "/checkpoints")
params = ckpt.restore(exp.abstract_state())[0].params
ckpt.close()
test = exp.dataset.test["points"][:2048].astype(np.float64)
metrics = evaluation.evaluate(exp, params, num_examples=2048, num_samples=1)
print(json.dumps({
  "mean": np.asarray(params["mean"]).tolist(),
  "std": np.exp(np.asarray(params["log_std"], np.float64)).tolist(),
  "eval_nll": metrics["eval/nll"],
  "train_mean": exp.dataset.train["points"].mean(0).tolist(),
  "train_std": exp.dataset.train["points"].std(0).tolist(),
  "test": test.tolist(),
}))
"""


def _example_code() -> str:
  text = DOC.read_text()
  section = text[text.index("## Adding a family") :]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_documented_family_fits_its_closed_form(tmp_path):
  import numpy as np

  (tmp_path / "family.py").write_text(_example_code())
  result = subprocess.run(
    [
      sys.executable,
      "-c",
      textwrap.dedent(SCRIPT),
      str(tmp_path / "family.py"),
      str(tmp_path / "run"),
    ],
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  # Maximum likelihood of a diagonal Gaussian: the data's mean and standard deviation.
  np.testing.assert_allclose(out["mean"], out["train_mean"], atol=0.1)
  np.testing.assert_allclose(out["std"], out["train_std"], rtol=0.05)
  # eval/nll is the closed-form Gaussian NLL of the test points under the fitted parameters.
  x, mean, std = np.asarray(out["test"]), np.asarray(out["mean"]), np.asarray(out["std"])
  nll = np.sum(0.5 * ((x - mean) / std) ** 2 + np.log(std) + 0.5 * np.log(2 * np.pi), axis=1)
  assert (
    out["eval_nll"] == np.float64(nll.mean()).item() or abs(out["eval_nll"] - nll.mean()) < 1e-4
  )
  records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(r)["step"] for r in records if "train/loss" in r] == [100, 200, 300]
