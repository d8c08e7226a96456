"""genjax's train step against a PyTorch twin of the same model, on the CPU.

``make bench-twin`` (or ``python benchmarks/torch_twin.py [--configs=a,b]
[--rounds=R] [--steps=N]``) prints a table and writes
``bench_results/torch_twin.json``.

The twins re-implement the reference configs' networks, losses and optimizers
in PyTorch (``vae_mnist``, ``dcgan_mnist``, ``ddpm_mnist``, ``pixelcnn_mnist``),
each asserted to have genjax's parameter count. A step is what genjax's
compiled step does: preprocessing of the raw batch, forward, backward, the
optimizer update (clipping and learning-rate schedule included) and the EMA
where the config keeps one; for ``dcgan_mnist`` one D update then one G update
with the InfoGAN code term, as ``families/gan.py`` does with ``d_steps=1``.

Every (framework, config, mode) runs in a process of its own, so neither
framework's thread pools or allocator see the other's. Workers start and warm
up (compilation excluded), then the parent asks them in turn, round after
round (genjax, torch eager, torch.compile, genjax, ...), for a timed block of
steps; only one worker runs at a time. Reported ratios are medians over rounds
of genjax steps/s over torch steps/s (> 1: genjax is faster). genjax runs
``bench.py``'s bare step (the jitted step on one device-resident batch); torch
gets random data of the same shape, already in memory.

``ddpm_mnist`` also times sampling of a batch: DDPM with all 1000 steps and DDIM
with 50 (trailing spacing, eta 0, x0 clipped), genjax's ``generate`` against a
plain Python loop under ``torch.no_grad``, eager and compiled.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

REPO = pathlib.Path(__file__).resolve().parents[1]
THREADS = 2
WAIT_POLICY = "PASSIVE"
CONFIGS = ("vae_mnist", "dcgan_mnist", "ddpm_mnist", "pixelcnn_mnist")
FRAMEWORKS = ("genjax", "torch", "torch_compile")
# Diffusion samplers timed beside the train step: (name, sampler, steps).
SAMPLERS = (("ddim-50", "ddim", 50), ("ddpm-1000", "ddpm", 1000))
# Configs whose step takes ~0.5 s or more are timed over fewer steps per round.
STEP_DIVISOR = {"ddpm_mnist": 2, "pixelcnn_mnist": 4}


# -- twin networks ---------------------------------------------------------------


class VAE(nn.Module):
  """``vae_mnist``: MLP encoder/decoder (512, 512), 32-d Gaussian posterior, Bernoulli pixels."""

  def __init__(self, dim=784, hidden=(512, 512), latent=32):
    super().__init__()
    enc, width = [], dim
    for h in hidden:
      enc += [nn.Linear(width, h), nn.ReLU()]
      width = h
    self.encoder = nn.Sequential(*enc)
    self.mean, self.log_var = nn.Linear(width, latent), nn.Linear(width, latent)
    dec, width = [], latent
    for h in hidden:
      dec += [nn.Linear(width, h), nn.ReLU()]
      width = h
    self.decoder = nn.Sequential(*dec, nn.Linear(width, dim))

  def forward(self, x):
    """Negative ELBO (analytic KL, one reparameterised sample), mean over the batch."""
    h = self.encoder(x)
    mean, log_var = self.mean(h), self.log_var(h)
    z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
    logits = self.decoder(z)
    recon = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
    kl = 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).sum(1)
    return (kl - recon).mean()


class DCGANGenerator(nn.Module):
  """``dcgan_mnist``'s G: [z, embed(code)] -> 7x7x64 -> two sub-pixel 2x stages -> tanh."""

  def __init__(self, latent=100, base=16, code_classes=10, embed_dim=50):
    super().__init__()
    self.base_channels = 4 * base
    self.embed = nn.Embedding(code_classes, embed_dim)
    # No bias before BatchNorm, as genjax (its batch mean cancels one).
    self.project = nn.Linear(latent + embed_dim, 7 * 7 * 4 * base, bias=False)
    self.bn0 = nn.BatchNorm2d(4 * base, momentum=0.1)
    self.up0 = nn.Conv2d(4 * base, 4 * 2 * base, 3, padding=1)
    self.bn1 = nn.BatchNorm2d(2 * base, momentum=0.1)
    self.up1 = nn.Conv2d(2 * base, 4 * base, 3, padding=1)
    self.bn2 = nn.BatchNorm2d(base, momentum=0.1)
    self.to_image = nn.Conv2d(base, 1, 3, padding=1)

  def forward(self, z, codes):
    h = self.project(torch.cat([z, self.embed(codes)], 1))
    h = F.relu(self.bn0(h.view(-1, self.base_channels, 7, 7)))
    h = F.relu(self.bn1(F.pixel_shuffle(self.up0(h), 2)))
    h = F.relu(self.bn2(F.pixel_shuffle(self.up1(h), 2)))
    return torch.tanh(self.to_image(h))


class DCGANDiscriminator(nn.Module):
  """``dcgan_mnist``'s D: 4x4 stride-2 convs 28 -> 14 -> 7 -> 4, logit and InfoGAN code head."""

  def __init__(self, base=16, code_classes=10):
    super().__init__()
    self.conv0 = nn.Conv2d(1, base, 4, 2, padding=1)
    self.conv1 = nn.Conv2d(base, 2 * base, 4, 2, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(2 * base, momentum=0.1)
    self.conv2 = nn.Conv2d(2 * base, 4 * base, 4, 2, bias=False)
    self.bn2 = nn.BatchNorm2d(4 * base, momentum=0.1)
    self.head = nn.Linear(16 * 4 * base, 1)
    self.code_head = nn.Linear(16 * 4 * base, code_classes)

  def forward(self, x):
    h = F.leaky_relu(self.conv0(x), 0.2)
    h = F.leaky_relu(self.bn1(self.conv1(h)), 0.2)
    # SAME padding of a stride-2 4x4 conv on 7 px pads 1 before and 2 after (7 -> 4).
    h = F.leaky_relu(self.bn2(self.conv2(F.pad(h, (1, 2, 1, 2)))), 0.2)
    h = h.flatten(1)
    return self.head(h)[:, 0], self.code_head(h)


def timestep_embedding(t, dim, max_period=10000.0):
  half = dim // 2
  freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / (half - 1))
  args = t.float()[:, None] * freqs[None]
  return torch.cat([torch.sin(args), torch.cos(args)], 1)


class ResBlock(nn.Module):
  """genjax's ``ResBlock`` with "scale_shift" conditioning (adaptive second GroupNorm)."""

  def __init__(self, cin, cout, emb_dim, groups):
    super().__init__()
    self.norm1 = nn.GroupNorm(groups, cin, eps=1e-6)
    self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
    self.emb_proj = nn.Linear(emb_dim, 2 * cout)
    self.norm2 = nn.GroupNorm(groups, cout, eps=1e-6)
    self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
    self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

  def forward(self, x, emb):
    h = self.conv1(F.silu(self.norm1(x)))
    scale, shift = self.emb_proj(F.silu(emb))[:, :, None, None].chunk(2, 1)
    h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
    return (x if self.shortcut is None else self.shortcut(x)) + h


class Attention(nn.Module):
  """Single-head self-attention over positions with q/k/v/out projections, as genjax's.

  Written out (not ``scaled_dot_product_attention``) so both frameworks run the
  same computation.
  """

  def __init__(self, channels, groups):
    super().__init__()
    self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
    self.q, self.k, self.v = (nn.Linear(channels, channels) for _ in range(3))
    self.proj_out = nn.Linear(channels, channels)

  def forward(self, x):
    b, c, hgt, wid = x.shape
    h = self.norm(x).flatten(2).transpose(1, 2)  # [B, HW, C]
    q, k, v = self.q(h), self.k(h), self.v(h)
    weights = torch.softmax(q @ k.transpose(1, 2) * c**-0.5, -1)
    out = self.proj_out(weights @ v).transpose(1, 2).reshape(b, c, hgt, wid)
    return x + out


class UNet(nn.Module):
  """genjax's DDPM ``UNet`` at ``ddpm_mnist``'s settings (see ``models/unet.py``)."""

  def __init__(self, channels=16, mults=(1, 2, 2), num_res_blocks=1, attn=(7,), groups=4, side=28):
    super().__init__()
    ch, emb_dim = channels, 4 * channels
    self.channels, self.mults, self.num_res = ch, mults, num_res_blocks
    self.temb0, self.temb1 = nn.Linear(ch, emb_dim), nn.Linear(emb_dim, emb_dim)
    self.conv_in = nn.Conv2d(1, ch, 3, padding=1)
    self.down, widths, width = nn.ModuleList(), [ch], ch
    for level, mult in enumerate(mults):
      for _ in range(num_res_blocks):
        attn_here = side in attn
        self.down.append(
          nn.ModuleList(
            [ResBlock(width, ch * mult, emb_dim, groups)]
            + ([Attention(ch * mult, groups)] if attn_here else [])
          )
        )
        width = ch * mult
        widths.append(width)
      if level != len(mults) - 1:
        self.down.append(nn.Conv2d(width, width, 3, stride=2))
        widths.append(width)
        side //= 2
    self.mid1 = ResBlock(width, width, emb_dim, groups)
    self.mid_attn = Attention(width, groups)
    self.mid2 = ResBlock(width, width, emb_dim, groups)
    self.up = nn.ModuleList()
    for level in reversed(range(len(mults))):
      for _ in range(num_res_blocks + 1):
        cin = width + widths.pop()
        width = ch * mults[level]
        self.up.append(
          nn.ModuleList(
            [ResBlock(cin, width, emb_dim, groups)]
            + ([Attention(width, groups)] if side in attn else [])
          )
        )
      if level != 0:
        self.up.append(nn.Conv2d(width, width, 3, padding=1))
        side *= 2
    self.norm_out = nn.GroupNorm(groups, width, eps=1e-6)
    self.conv_out = nn.Conv2d(width, 1, 3, padding=1)

  def forward(self, x, t):
    emb = self.temb1(F.silu(self.temb0(timestep_embedding(t, self.channels))))
    hs = [self.conv_in(x)]
    for layer in self.down:
      if isinstance(layer, nn.Conv2d):
        # SAME padding of a stride-2 3x3 conv on an even side: one row/column after.
        hs.append(layer(F.pad(hs[-1], (0, 1, 0, 1))))
        continue
      h = layer[0](hs[-1], emb)
      hs.append(layer[1](h) if len(layer) > 1 else h)
    h = self.mid2(self.mid_attn(self.mid1(hs[-1], emb)), emb)
    for layer in self.up:
      if isinstance(layer, nn.Conv2d):
        h = layer(F.interpolate(h, scale_factor=2, mode="nearest"))
        continue
      h = layer[0](torch.cat([h, hs.pop()], 1), emb)
      h = layer[1](h) if len(layer) > 1 else h
    return self.conv_out(F.silu(self.norm_out(h)))


class GatedBlock(nn.Module):
  """genjax's ``GatedBlock``: vertical and horizontal stacks kept causal by padding and shifts."""

  def __init__(self, cin, features, kernel, first):
    super().__init__()
    p, self.p, self.first = kernel // 2, kernel // 2, first
    self.v_conv = nn.Conv2d(cin, 2 * features, (p + 1, kernel))
    self.h_conv = nn.Conv2d(cin, 2 * features, (1, p + 1))
    self.v_to_h = nn.Conv2d(2 * features, 2 * features, 1)
    self.h_out = nn.Conv2d(features, features, 1)

  @staticmethod
  def _gate(pre):
    f, g = pre.chunk(2, 1)
    return torch.tanh(f) * torch.sigmoid(g)

  def forward(self, v, h):
    p = self.p
    v_pre = self.v_conv(F.pad(v, (p, p, p, 0)))
    h_in = F.pad(h, (1, 0))[..., :-1] if self.first else h
    h_pre = self.h_conv(F.pad(h_in, (p, 0)))
    h_pre = h_pre + self.v_to_h(F.pad(v_pre, (0, 0, 1, 0))[:, :, :-1])
    h_out = self.h_out(self._gate(h_pre))
    return self._gate(v_pre), h_out if self.first else h_out + h


class GatedPixelCNN(nn.Module):
  """``pixelcnn_mnist``: 8 gated layers of 32 channels, 5x5 kernels, 2 logits per pixel."""

  def __init__(self, num_layers=8, features=32, kernel=5, num_outputs=2):
    super().__init__()
    self.blocks = nn.ModuleList(
      GatedBlock(1 if i == 0 else features, features, kernel, i == 0) for i in range(num_layers)
    )
    self.hidden = nn.Conv2d(features, features, 1)
    self.logits = nn.Conv2d(features, num_outputs, 1)

  def forward(self, grid):
    """Exact NLL in nats per image (mean over the batch) of a binary grid ``[B, 1, H, W]``."""
    v = h = grid.float()
    for block in self.blocks:
      v, h = block(v, h)
    logits = self.logits(F.relu(self.hidden(F.relu(h))))
    nll = F.cross_entropy(logits, grid[:, 0].long(), reduction="none")
    return nll.flatten(1).sum(1).mean()


def twin_modules(name: str) -> dict[str, nn.Module]:
  """The twin's networks, keyed like genjax's top-level parameter groups."""
  if name == "vae_mnist":
    return {"vae": VAE()}
  if name == "dcgan_mnist":
    return {"generator": DCGANGenerator(), "discriminator": DCGANDiscriminator()}
  if name == "ddpm_mnist":
    return {"unet": UNet()}
  if name == "pixelcnn_mnist":
    return {"pixelcnn": GatedPixelCNN()}
  raise ValueError(f"no PyTorch twin for {name!r}; twins: {list(CONFIGS)}")


def torch_param_count(name: str) -> int:
  return sum(p.numel() for m in twin_modules(name).values() for p in m.parameters())


# -- genjax parameter counts --------------------------------------------------------


def _load_config(name: str):
  from genjax import config as config_lib

  return config_lib.load_config(REPO / "experiments" / "configs" / f"{name}.py")


def genjax_param_count_from_shapes(name: str) -> int:
  """genjax's parameter count from shapes alone: MNIST's facts, no data read, no initialisation.

  The benchmark itself compares the count of the state it trains
  (``experiment.build(config).init_state().params``).
  """
  import jax

  from genjax import config as config_lib
  from genjax.families.base import DataInfo
  from genjax.run import experiment

  config = _load_config(name)
  config_lib.validate(config, 1)
  config = config_lib.resolve(config)
  info = DataInfo("mnist", "image", (28, 28, 1), 10, config.data.preprocess)
  state = experiment.abstract_state(experiment.build_family(config, info))
  return sum(math.prod(p.shape) for p in jax.tree.leaves(state.params))


# -- torch steps ---------------------------------------------------------------------


def _lr_schedule(config):
  """genjax's learning-rate schedule as a Python function of the step (optax's formulas)."""
  import numpy as np

  from genjax.core import optim

  schedule = optim.make_schedule(config.optimizer, config.train.num_steps)
  table = np.asarray([schedule(i) for i in range(0, config.train.num_steps, 100)], np.float32)
  return lambda step: float(table[min(step // 100, len(table) - 1)])


class _Trainer:
  """Adam (per player), global-norm clipping, learning-rate schedule and debiased EMA."""

  def __init__(self, modules, config, compiled: bool):
    o = config.optimizer
    self.modules, self.clip = modules, float(o.grad_clip_norm)
    self.decay, self.count = float(config.train.ema_decay), 0
    g = getattr(config, "gan", None)
    rates = {"generator": g.g_learning_rate, "discriminator": g.d_learning_rate} if g else {}
    self.schedule = _lr_schedule(config) if o.schedule != "constant" or o.warmup_steps else None
    self.opts, self.lrs = {}, {}
    for key, module in modules.items():
      # A tensor learning rate lets the schedule change it without recompiling; on the
      # CPU only the fused Adam accepts one (and it is the fastest there).
      self.lrs[key] = torch.tensor(float(rates.get(key, o.learning_rate)))
      self.opts[key] = torch.optim.Adam(
        module.parameters(), lr=self.lrs[key], betas=(o.b1, o.b2), eps=o.eps, fused=True
      )
    params = [p for m in modules.values() for p in m.parameters()]
    self.ema = [p.detach().clone() for p in params] if self.decay > 0 else None
    self.params = params
    self._update = torch.compile(self._update_fn) if compiled else self._update_fn
    self._ema = torch.compile(self._ema_fn) if compiled else self._ema_fn

  def _update_fn(self, key):
    if self.clip > 0:
      torch.nn.utils.clip_grad_norm_(self.modules[key].parameters(), self.clip, foreach=True)
    self.opts[key].step()

  @torch.no_grad()
  def _ema_fn(self, rate):
    torch._foreach_lerp_(self.ema, self.params, rate)

  def update(self, key):
    if self.schedule is not None:
      self.lrs[key].fill_(self.schedule(self.count))
    self._update(key)
    self.opts[key].zero_grad(set_to_none=False)

  def finish(self):
    self.count += 1
    if self.ema is not None:
      n, log_decay = self.count, math.log(self.decay)
      rate = 1.0 if n <= 1 else math.expm1(log_decay) / math.expm1(n * log_decay)
      self._ema(torch.tensor(rate))


def torch_train_step(name: str, compiled: bool):
  """``(step, batch_size, parameter count)`` of the twin; ``step()`` runs one train step."""
  torch.manual_seed(0)
  config = _load_config(name)
  batch = int(config.train.batch_size)
  modules = twin_modules(name)
  count = sum(p.numel() for m in modules.values() for p in m.parameters())
  trainer = _Trainer(modules, config, compiled)
  wrap = torch.compile if compiled else (lambda f: f)
  # Raw grey levels; each step preprocesses them as genjax's step does.
  grey = torch.rand(batch, 1, 28, 28)

  if name in ("vae_mnist", "pixelcnn_mnist"):
    model = next(iter(modules.values()))
    flat = name == "vae_mnist"
    loss_fn = wrap(lambda x: model(x.flatten(1) if flat else x))

    def step():
      loss = loss_fn(torch.bernoulli(grey))  # dynamic binarisation
      loss.backward()
      trainer.update(next(iter(modules)))
      trainer.finish()

    return step, batch, count

  if name == "ddpm_mnist":
    unet = modules["unet"]
    d = config.diffusion
    betas = torch.linspace(d.beta_start, d.beta_end, d.num_steps, dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    sqrt_ac, sqrt_1m = alphas_cumprod.sqrt().float(), (1 - alphas_cumprod).sqrt().float()

    def loss_of(x0):
      t = torch.randint(0, d.num_steps, (x0.shape[0],))
      eps = torch.randn_like(x0)
      x_t = sqrt_ac[t][:, None, None, None] * x0 + sqrt_1m[t][:, None, None, None] * eps
      return F.mse_loss(unet(x_t, t), eps)

    loss_fn = wrap(loss_of)

    def step():
      loss_fn(grey * 2 - 1).backward()
      trainer.update("unet")
      trainer.finish()

    return step, batch, count

  g, dis = modules["generator"], modules["discriminator"]
  gan = config.gan
  g_fn, d_fn = wrap(g), wrap(dis)
  latent, classes, info = int(config.model.latent_dim), int(gan.code_classes), gan.info_weight

  def step():
    x = grey * 2 - 1
    # D update: G's samples are constants to it.
    z, codes = torch.randn(batch, latent), torch.randint(0, classes, (batch,))
    with torch.no_grad():
      fake = g_fn(z, codes)
    real_logits, _ = d_fn(x)
    fake_logits, code_logits = d_fn(fake)
    d_loss = (F.softplus(-real_logits) + F.softplus(fake_logits)).mean()
    d_loss = d_loss + info * F.cross_entropy(code_logits, codes)
    d_loss.backward()
    trainer.update("discriminator")
    # G update against the updated D; D's weight gradients are not needed.
    dis.requires_grad_(False)
    z, codes = torch.randn(batch, latent), torch.randint(0, classes, (batch,))
    logits, code_logits = d_fn(g_fn(z, codes))
    g_loss = F.softplus(-logits).mean() + info * F.cross_entropy(code_logits, codes)
    g_loss.backward()
    dis.requires_grad_(True)
    trainer.update("generator")
    trainer.finish()

  return step, batch, count


def torch_sampler(sampler: str, steps: int, batch: int, compiled: bool):
  """``run()`` drawing one batch of ``ddpm_mnist`` samples with the twin U-Net."""
  torch.manual_seed(0)
  d = _load_config("ddpm_mnist").diffusion
  unet = UNet().eval()
  betas = torch.linspace(d.beta_start, d.beta_end, d.num_steps, dtype=torch.float64)
  ac = torch.cumprod(1 - betas, 0)
  ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
  consts = {
    "sqrt_ac": ac.sqrt(),
    "sqrt_1m": (1 - ac).sqrt(),
    # Posterior mean coefficients of x0 and x_t; sigma_t^2 = beta_t.
    "c0": betas * ac_prev.sqrt() / (1 - ac),
    "ct": (1 - betas) ** 0.5 * (1 - ac_prev) / (1 - ac),
    "sigma": betas.sqrt(),
  }
  consts = {k: v.float() for k, v in consts.items()}

  def predict(x, t):
    """Clipped x0 and the epsilon consistent with it (genjax's clip_x0)."""
    eps = unet(x, t.expand(x.shape[0]))
    a, s = consts["sqrt_ac"][t], consts["sqrt_1m"][t]
    x0 = ((x - s * eps) / a).clamp(-1, 1)
    return x0, (x - a * x0) / s

  def ddpm_step(x, t, noise):
    x0, _ = predict(x, t)
    mean = consts["c0"][t] * x0 + consts["ct"][t] * x
    return mean + torch.where(t > 0, consts["sigma"][t], 0.0) * noise

  def ddim_step(x, t, t_prev):
    x0, eps = predict(x, t)
    a_prev = torch.where(t_prev >= 0, consts["sqrt_ac"][t_prev.clamp(min=0)], 1.0)
    return a_prev * x0 + (1 - a_prev**2).sqrt() * eps

  if sampler == "ddpm":
    fn = torch.compile(ddpm_step) if compiled else ddpm_step
    ts = [torch.tensor(t) for t in range(d.num_steps - 1, -1, -1)]

    def run():
      with torch.no_grad():
        x = torch.randn(batch, 1, 28, 28)
        for t in ts:
          x = fn(x, t, torch.randn_like(x))
      return x

    return run
  from genjax.samplers import diffusion as samplers

  times = [int(t) for t in samplers.timesteps(d.num_steps, steps, "trailing")]
  pairs = [(torch.tensor(t), torch.tensor(p)) for t, p in zip(times, times[1:] + [-1])]
  fn = torch.compile(ddim_step) if compiled else ddim_step

  def run():
    with torch.no_grad():
      x = torch.randn(batch, 1, 28, 28)
      for t, p in pairs:
        x = fn(x, t, p)
    return x

  return run


# -- genjax steps --------------------------------------------------------------------


def genjax_train_step(name: str):
  import jax

  sys.path.insert(0, str(REPO / "benchmarks"))
  import bench

  exp, step_fn, state, batch = bench.bare_step(_load_config(name))
  holder = [state]

  def step():
    holder[0], _ = step_fn(holder[0], batch)

  def sync():
    jax.block_until_ready(holder[0])

  count = sum(math.prod(p.shape) for p in jax.tree.leaves(holder[0].params))
  return step, sync, int(exp.config.train.batch_size), count


def genjax_sampler(sampler: str, steps: int, batch: int):
  import functools

  import jax
  import jax.numpy as jnp

  from genjax.run import experiment

  exp = experiment.build(_load_config("ddpm_mnist"))
  family = exp.family
  params = family.eval_params(exp.init_state())
  keys = jax.random.split(jax.random.key(0), batch)
  labels = jnp.zeros((batch,), jnp.int32)
  fn = jax.jit(functools.partial(family.generate, sampler=sampler, steps=steps))
  return lambda: jax.block_until_ready(fn(params, keys, labels))


# -- worker and parent ------------------------------------------------------------------


def worker(args):
  """Builds one (framework, config, mode), warms it up, then times blocks on request."""
  framework, compiled = args.framework, args.framework == "torch_compile"
  if framework != "genjax":
    torch.set_num_threads(THREADS)
  start = time.perf_counter()
  sync, count = (lambda: None), None
  if args.mode == "train":
    if framework == "genjax":
      step, sync, _, count = genjax_train_step(args.config)
    else:
      step, _, count = torch_train_step(args.config, compiled)
    warmup = 3
  else:
    sampler, steps = next((s, n) for name, s, n in SAMPLERS if name == args.mode)
    if framework == "genjax":
      step = genjax_sampler(sampler, steps, args.sampler_batch)
    else:
      step = torch_sampler(sampler, steps, args.sampler_batch, compiled)
    warmup = 1
  for _ in range(warmup):
    step()
  sync()
  print(json.dumps({"ready": True, "params": count, "warmup_s": time.perf_counter() - start}))
  sys.stdout.flush()
  for line in sys.stdin:
    n = int(line)
    if n <= 0:
      return
    start = time.perf_counter()
    for _ in range(n):
      step()
    sync()
    print(json.dumps({"per_s": n / (time.perf_counter() - start)}), flush=True)


def _machine():
  cpu = "unknown"
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  import importlib.metadata as md

  return dict(
    cpu=cpu,
    cores=os.cpu_count(),
    threads_per_process=THREADS,
    omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", WAIT_POLICY),
    torch=torch.__version__,
    jax=md.version("jax"),
    python=platform.python_version(),
    load_before=os.getloadavg(),
  )


def _spawn(framework, config, mode, args):
  command = [sys.executable, __file__, "--worker", f"--framework={framework}"]
  command += [f"--configs={config}", f"--mode={mode}", f"--sampler_batch={args.sampler_batch}"]
  env = dict(os.environ, OMP_NUM_THREADS=str(THREADS))
  # OpenMP's default spin-then-yield barrier makes a 2-thread torch op ~10x slower than
  # 1 thread once other jobs share the 2 cores (32 ms against 2.5 ms for a 128x784x512
  # matmul at load 9); passive waiting gives up the core instead.
  env.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
  return subprocess.Popen(
    command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
  )


def _read(proc):
  for line in proc.stdout:
    if line.startswith("{"):
      return json.loads(line)
  raise RuntimeError(f"worker exited with {proc.wait()}")


def _sig(x: float) -> float:
  """Four significant digits: sampler rates are far below 1 per second."""
  return float(f"{x:.4g}")


def measure(config, mode, n, args):
  """Interleaved rounds of the three frameworks; per-round throughputs and ratios."""
  procs = {f: _spawn(f, config, mode, args) for f in FRAMEWORKS}
  try:
    ready = {f: _read(p) for f, p in procs.items()}
    counts = {f: r["params"] for f, r in ready.items() if r["params"] is not None}
    if len(set(counts.values())) > 1:
      raise AssertionError(f"{config}: parameter counts differ: {counts}")
    rates = {f: [] for f in FRAMEWORKS}
    for _ in range(args.rounds):
      for f, p in procs.items():
        p.stdin.write(f"{n}\n")
        p.stdin.flush()
        rates[f].append(_read(p)["per_s"])
  finally:
    for p in procs.values():
      if p.poll() is None:
        p.stdin.write("0\n")
        p.stdin.flush()
        p.wait()
  row = dict(config=config, mode=mode, timed=n, rounds=args.rounds, params=counts.get("genjax"))
  for f in FRAMEWORKS:
    row[f"{f}_per_s"] = _sig(statistics.median(rates[f]))
  for f in FRAMEWORKS[1:]:
    ratios = [a / b for a, b in zip(rates["genjax"], rates[f])]
    row[f"genjax_over_{f}"] = round(statistics.median(ratios), 3)
  row["rates"] = {f: [_sig(r) for r in v] for f, v in rates.items()}
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--configs", default=",".join(CONFIGS))
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument(
    "--steps", type=int, default=20, help="timed train steps per round (fewer for slow configs)"
  )
  parser.add_argument("--samplers", default=",".join(s for s, _, _ in SAMPLERS))
  parser.add_argument("--sampler_batch", type=int, default=64)
  parser.add_argument("--sampler_calls", type=int, default=1, help="timed batches per round")
  parser.add_argument("--out", default=str(REPO / "bench_results" / "torch_twin.json"))
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--framework", default="genjax", help=argparse.SUPPRESS)
  parser.add_argument("--mode", default="train", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    args.config = args.configs
    return worker(args)
  machine = _machine()
  rows = []
  for config in [c for c in args.configs.split(",") if c]:
    modes = [("train", max(args.steps // STEP_DIVISOR.get(config, 1), 1))]
    if config == "ddpm_mnist":
      modes += [(s, args.sampler_calls) for s in args.samplers.split(",") if s]
    for mode, n in modes:
      rows.append(measure(config, mode, n, args))
      print(json.dumps(rows[-1]), flush=True)
      # Written after every row: a long run stopped part-way keeps what it measured.
      machine["load_after"] = os.getloadavg()
      out = pathlib.Path(args.out)
      out.parent.mkdir(parents=True, exist_ok=True)
      out.write_text(json.dumps(dict(machine=machine, results=rows), indent=1) + "\n")
  print(
    f"{machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, jax {machine['jax']}"
  )
  unit = {"train": "steps/s"}
  print(
    f"{'config':<16}{'mode':<11}{'params':>9}{'genjax':>9}{'eager':>9}{'compile':>9}"
    f"{'gj/eager':>10}{'gj/comp':>9}  unit"
  )
  for r in rows:
    print(
      f"{r['config']:<16}{r['mode']:<11}{r['params'] or '':>9}{r['genjax_per_s']:>9}"
      f"{r['torch_per_s']:>9}{r['torch_compile_per_s']:>9}{r['genjax_over_torch']:>10}"
      f"{r['genjax_over_torch_compile']:>9}  {unit.get(r['mode'], 'batches/s')}"
    )
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
