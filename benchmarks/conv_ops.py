"""One convolution at a time: XLA:CPU against PyTorch, and the kernel gradient's two forms.

  python benchmarks/conv_ops.py [--repeats=20]

For each convolution shape of the reference models (batch 64, NHWC, float32):
the forward pass and forward + backward in XLA and, where torch is installed,
in PyTorch (2 threads); and the kernel gradient alone as XLA computes it and as
one matmul per kernel tap (``genjax.models.layers``' custom VJP). Milliseconds
per call, median of ``--repeats``. Writes ``bench_results/conv_ops.json``.
"""

import json
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax import lax

# As in torch_twin.py: OpenMP's spinning barrier slows a 2-thread torch tenfold on busy cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = pathlib.Path(__file__).resolve().parents[1]
_REPEATS = flags.DEFINE_integer("repeats", 20, "Timed calls per measurement.")
NHWC = ("NHWC", "HWIO", "NHWC")
# name, (H, W, C_in, C_out), kernel, stride, padding
SHAPES = [
  ("1x1 64->64 28x28", (28, 28, 64, 64), (1, 1), 1, ((0, 0), (0, 0))),
  ("1x3 32->64 28x28 (PixelCNN h)", (28, 28, 32, 64), (1, 3), 1, ((0, 0), (2, 0))),
  ("3x5 32->64 28x28 (PixelCNN v)", (28, 28, 32, 64), (3, 5), 1, ((2, 0), (2, 2))),
  ("3x3 32->32 28x28 (U-Net)", (28, 28, 32, 32), (3, 3), 1, ((1, 1), (1, 1))),
  ("3x3 64->64 14x14 (U-Net)", (14, 14, 64, 64), (3, 3), 1, ((1, 1), (1, 1))),
  ("4x4/2 16->32 14x14 (DCGAN D)", (14, 14, 16, 32), (4, 4), 2, ((1, 2), (1, 2))),
]
BATCH = 64


def _ms(fn, *args) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return 1e3 * float(np.median(times))


def _kernel_grad_taps(x, dy, kernel_shape, stride, pads):
  kh, kw, cin, cout = kernel_shape
  ho, wo = dy.shape[1:3]
  xp = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  rows = lambda i, j: xp[
    :, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride
  ]  # noqa: E731
  taps = [
    rows(i, j).reshape(-1, cin).T @ dy.reshape(-1, cout) for i in range(kh) for j in range(kw)
  ]
  return jnp.stack(taps).reshape(kernel_shape)


def _torch_ms(x, w, stride, pads):
  try:
    import torch
  except ImportError:
    return None, None
  torch.set_num_threads(2)
  xt = torch.tensor(np.asarray(x)).permute(0, 3, 1, 2).contiguous().requires_grad_(True)
  wt = torch.tensor(np.asarray(w)).permute(3, 2, 0, 1).contiguous().requires_grad_(True)
  pad = (pads[1][0], pads[1][1], pads[0][0], pads[0][1])
  forward = lambda: torch.nn.functional.conv2d(torch.nn.functional.pad(xt, pad), wt, stride=stride)  # noqa: E731

  def both():
    (0.5 * forward().square().sum()).backward()

  out = []
  for fn, grad in ((forward, False), (both, True)):
    with torch.set_grad_enabled(grad):
      fn()
      times = []
      for _ in range(_REPEATS.value):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    out.append(1e3 * float(np.median(times)))
  return out


def _row(name, shape, kernel, stride, pads) -> dict:
  (h, w_, cin, cout), (kh, kw) = shape, kernel
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(BATCH, h, w_, cin)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(kh, kw, cin, cout)) * 0.1, jnp.float32)

  def conv(x, w):
    return lax.conv_general_dilated(x, w, (stride, stride), pads, dimension_numbers=NHWC)

  dy = conv(x, w)
  both = jax.jit(jax.grad(lambda x, w: 0.5 * jnp.sum(conv(x, w) ** 2), argnums=(0, 1)))
  kgrad_xla = jax.jit(lambda x, w, dy: jax.vjp(lambda k: conv(x, k), w)[1](dy)[0])
  kgrad_taps = jax.jit(lambda x, dy: _kernel_grad_taps(x, dy, w.shape, stride, pads))
  np.testing.assert_allclose(kgrad_taps(x, dy), kgrad_xla(x, w, dy), rtol=1e-3, atol=1e-2)
  torch_fwd, torch_both = _torch_ms(x, w, stride, pads)
  row = dict(
    conv=name,
    xla_forward_ms=_ms(jax.jit(conv), x, w),
    xla_forward_backward_ms=_ms(both, x, w),
    torch_forward_ms=torch_fwd,
    torch_forward_backward_ms=torch_both,
    kernel_grad_xla_ms=_ms(kgrad_xla, x, w, dy),
    kernel_grad_taps_ms=_ms(kgrad_taps, x, dy),
  )
  return {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}


def main(argv):
  del argv
  rows = []
  for spec in SHAPES:
    rows.append(_row(*spec))
    print(json.dumps(rows[-1]), flush=True)
  out = REPO / "bench_results" / "conv_ops.json"
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(dict(jax=jax.__version__, batch=BATCH, rows=rows), indent=1) + "\n")
  print(f"wrote {out}")


if __name__ == "__main__":
  app.run(main)
