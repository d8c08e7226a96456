"""Two-player GAN objectives on discriminator / critic logits, and gradient penalties.

Conventions:
  * Every function works on the discriminator's raw outputs ("logits", or the
    unbounded critic scores for WGAN), shape ``[B]``; larger means "more real".
    ``D(x) = sigmoid(logit)`` only for the log-loss objectives. Probabilities are
    never formed: ``log D = log_sigmoid(r)`` and ``log(1 - D) = log_sigmoid(-f)``,
    so losses and gradients stay finite for any finite logit.
  * Every returned quantity is a per-example *loss to minimise*, shape ``[B]``:
    the discriminator's loss w.r.t. its parameters, the generator's w.r.t. its
    own. Reductions over the batch (usually the mean) are left to the caller.
  * Sign conventions, for every loss in ``LOSSES`` (in the region where it is not
    flat, e.g. inside the hinge margin):
    ``d discriminator / d real_logit < 0`` (raising real scores lowers D's loss),
    ``d discriminator / d fake_logit > 0`` and ``d generator / d fake_logit < 0``
    (the generator wants its samples to score as real).
  * How many discriminator steps run per generator step is the training loop's
    business, not this module's.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

Critic = Callable[[jax.Array], jax.Array]


class GANLoss(NamedTuple):
  """A two-player objective as a pair of pure per-example losses.

  Attributes:
    discriminator: ``(real_logits [B], fake_logits [B]) -> [B]``, minimised
      w.r.t. the discriminator / critic.
    generator: ``(fake_logits [B]) -> [B]``, minimised w.r.t. the generator.
  """

  discriminator: Callable[[jax.Array, jax.Array], jax.Array]
  generator: Callable[[jax.Array], jax.Array]


# ---------------------------------------------------------------------------
# Losses.
# ---------------------------------------------------------------------------


def minimax_value(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """Per-example GAN value function V(D, G) = log D(x) + log(1 - D(G(z))).

  D maximises its batch mean, G minimises it (Goodfellow et al. 2014). For fixed
  data and generator distributions p and q the optimal ``D* = p / (p + q)``
  attains ``-log 4 + 2 JSD(p || q)``.

  Args:
    real_logits: discriminator logits on data, shape ``[B]``.
    fake_logits: discriminator logits on generated samples, shape ``[B]``.

  Returns:
    ``log_sigmoid(r) + log_sigmoid(-f)``, shape ``[B]`` (always ``<= 0``).

  Example:
    >>> import jax.numpy as jnp
    >>> minimax_value(jnp.zeros(2), jnp.zeros(2))  # D = 1/2 everywhere: -log 4
    Array([-1.3862944, -1.3862944], dtype=float32)
  """
  return jax.nn.log_sigmoid(real_logits) + jax.nn.log_sigmoid(-fake_logits)


def minimax_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """``-V(D, G) = softplus(-r) + softplus(f)`` per example, shape ``[B]``.

  The binary cross-entropy with label 1 on data and 0 on samples; shared by the
  ``"minimax"`` and ``"non_saturating"`` objectives.
  """
  return jax.nn.softplus(-real_logits) + jax.nn.softplus(fake_logits)


def saturating_generator_loss(fake_logits: jax.Array) -> jax.Array:
  """Original minimax generator loss ``log(1 - D(G(z))) = -softplus(f)``, shape ``[B]``.

  Its gradient ``-sigmoid(f)`` vanishes when D confidently rejects the samples
  (``f -> -inf``), i.e. early in training; kept for reference and comparisons.
  """
  return -jax.nn.softplus(fake_logits)


def non_saturating_generator_loss(fake_logits: jax.Array) -> jax.Array:
  """Non-saturating generator loss ``-log D(G(z)) = softplus(-f)``, shape ``[B]``.

  Same fixed point as the saturating loss, but its gradient ``-sigmoid(-f)``
  tends to -1 (not 0) when D rejects the samples, so G still learns.
  """
  return jax.nn.softplus(-fake_logits)


def lsgan_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """Least-squares D loss ``1/2 (r - 1)^2 + 1/2 f^2`` (Mao et al. 2017, 0-1 coding).

  Operates on raw outputs (no sigmoid); shape ``[B]``.
  """
  return 0.5 * jnp.square(real_logits - 1.0) + 0.5 * jnp.square(fake_logits)


def lsgan_generator_loss(fake_logits: jax.Array) -> jax.Array:
  """Least-squares G loss ``1/2 (f - 1)^2`` on raw outputs, shape ``[B]``."""
  return 0.5 * jnp.square(fake_logits - 1.0)


def hinge_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """Hinge D loss ``relu(1 - r) + relu(1 + f)`` (Lim & Ye 2017; Miyato et al. 2018).

  Flat (zero gradient) once ``r >= 1`` or ``f <= -1``; shape ``[B]``.
  """
  return jax.nn.relu(1.0 - real_logits) + jax.nn.relu(1.0 + fake_logits)


def wgan_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """WGAN critic loss ``f - r`` (Arjovsky et al. 2017), shape ``[B]``.

  Its negated mean estimates the Wasserstein-1 distance only for a 1-Lipschitz
  critic: add :func:`gradient_penalty` (WGAN-GP) or clip the weights.
  """
  return fake_logits - real_logits


def wgan_generator_loss(fake_logits: jax.Array) -> jax.Array:
  """Generator loss ``-f`` for the WGAN and hinge objectives, shape ``[B]``."""
  return -fake_logits


LOSSES: dict[str, GANLoss] = {
  "minimax": GANLoss(minimax_discriminator_loss, saturating_generator_loss),
  "non_saturating": GANLoss(minimax_discriminator_loss, non_saturating_generator_loss),
  "lsgan": GANLoss(lsgan_discriminator_loss, lsgan_generator_loss),
  "hinge": GANLoss(hinge_discriminator_loss, wgan_generator_loss),
  "wgan": GANLoss(wgan_discriminator_loss, wgan_generator_loss),
}


def get_loss(name: str) -> GANLoss:
  """Returns the named two-player objective.

  Args:
    name: one of ``LOSSES`` (``"minimax"``, ``"non_saturating"``, ``"lsgan"``,
      ``"hinge"``, ``"wgan"``; WGAN-GP is ``"wgan"`` plus :func:`gradient_penalty`).

  Returns:
    A :class:`GANLoss` of per-example losses to minimise.

  Raises:
    ValueError: for an unknown name, listing the allowed ones.

  Example:
    >>> import jax.numpy as jnp
    >>> loss = get_loss("hinge")
    >>> loss.discriminator(jnp.array([2.0, 0.0]), jnp.array([-2.0, 0.5]))
    Array([0. , 2.5], dtype=float32)
    >>> loss.generator(jnp.array([0.5, -1.0]))
    Array([-0.5,  1. ], dtype=float32)
  """
  if name not in LOSSES:
    raise ValueError(f"unknown GAN loss {name!r}; allowed: {sorted(LOSSES)}")
  return LOSSES[name]


def info_code_loss(code_logits: jax.Array, codes: jax.Array) -> jax.Array:
  """InfoGAN's categorical-code term ``-log Q(c | G(z, c))`` (Chen et al. 2016).

  The cross-entropy of the auxiliary head's prediction of the code a sample was
  generated from. Both players minimise it (G through its samples, D through
  the head it shares its features with); ``log K`` minus its mean is the
  variational lower bound ``L_I`` on the mutual information ``I(c; G(z, c))``
  for a uniform ``K``-way code.

  Args:
    code_logits: the head's logits over the codes, shape ``[B, K]``.
    codes: the codes the samples were generated from, ints in ``[0, K)``, shape ``[B]``.

  Returns:
    Per-example cross-entropy in nats, shape ``[B]`` (``>= 0``).

  Example:
    >>> import jax.numpy as jnp
    >>> info_code_loss(jnp.zeros((2, 4)), jnp.array([0, 3]))  # uniform guess: log 4
    Array([1.3862944, 1.3862944], dtype=float32)
  """
  if code_logits.ndim != 2 or codes.shape != code_logits.shape[:1]:
    raise ValueError(
      f"expected code_logits [B, K] and codes [B]; got {code_logits.shape} and {codes.shape}"
    )
  log_q = jax.nn.log_softmax(code_logits, axis=-1)
  return -jnp.take_along_axis(log_q, codes[:, None].astype(jnp.int32), axis=-1)[:, 0]


# ---------------------------------------------------------------------------
# Gradient penalties.
# ---------------------------------------------------------------------------


def _input_gradients(critic_fn: Critic, x: jax.Array) -> jax.Array:
  """Per-example ``d critic(x)[i] / d x[i]``, flattened to ``[B, prod(x.shape[1:])]``.

  One VJP with a ones cotangent gives the gradient of ``sum_i critic(x)[i]``; its
  row ``i`` is example ``i``'s own gradient only because the critic treats
  examples independently.
  """
  out, vjp = jax.vjp(critic_fn, x)
  if out.shape != x.shape[:1]:
    raise ValueError(
      f"critic_fn must map a batch {x.shape} to per-example scores of shape "
      f"{x.shape[:1]}, got {out.shape}"
    )
  (grads,) = vjp(jnp.ones_like(out))
  return grads.reshape(x.shape[0], -1)


def _safe_norm(sq_norm: jax.Array) -> jax.Array:
  """``sqrt(sq_norm)`` whose value and gradient are finite (0) at ``sq_norm == 0``.

  The double ``where`` keeps ``sqrt``'s infinite derivative at 0 out of the
  backward pass (a single ``where`` would still multiply it by a zero cotangent,
  giving NaN); unlike ``sqrt(sq + eps)`` it is exact for every nonzero input.
  """
  positive = sq_norm > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq_norm, 1.0)), 0.0)


def gradient_penalty(
  critic_fn: Critic, real: jax.Array, fake: jax.Array, alpha: jax.Array
) -> jax.Array:
  """WGAN-GP penalty ``(||grad_x critic(x_hat)||_2 - 1)^2`` (Gulrajani et al. 2017).

  ``x_hat = alpha * real + (1 - alpha) * fake`` per example, with ``alpha[i]``
  broadcast over the trailing axes; the norm is over all of them (images are
  flattened). Input gradients come from one VJP of ``sum(critic_fn(x_hat))``,
  which is the per-example gradient only if the critic never mixes examples: no
  batch statistics (BatchNorm in training mode breaks this; use layer / instance
  norm or none), no minibatch-discrimination features. The norm is exact, and
  both value and parameter gradients stay finite when the input gradient is
  exactly zero (penalty 1); a plain ``jnp.linalg.norm`` would give NaN gradients
  there. Differentiable w.r.t. parameters closed over by ``critic_fn``
  (second-order through the input gradient); pass ``fake`` through
  ``jax.lax.stop_gradient`` if the generator's parameters are in scope.

  Args:
    critic_fn: ``[B, ...] -> [B]`` critic scores (bound to its parameters).
    real: data, shape ``[B, ...]``.
    fake: generated samples, same shape as ``real``.
    alpha: interpolation weights in ``[0, 1]``, shape ``[B]`` (typically
      ``jax.random.uniform(key, (B,))``).

  Returns:
    Penalty per example, shape ``[B]``; weight it (usually by 10) and add it to
    the critic's loss.

  Example:
    >>> import jax.numpy as jnp
    >>> w = jnp.array([3.0, 4.0])  # linear critic: gradient norm is ||w|| = 5
    >>> x = jnp.array([[1.0, 2.0], [-1.0, 0.5]])
    >>> gradient_penalty(lambda x: x @ w, x, -x, jnp.array([0.3, 0.9]))
    Array([16., 16.], dtype=float32)
  """
  if alpha.shape != real.shape[:1] or fake.shape != real.shape:
    raise ValueError(
      f"expected real and fake of equal shape [B, ...] and alpha of shape [B]; got "
      f"real {real.shape}, fake {fake.shape}, alpha {alpha.shape}"
    )
  a = alpha.reshape(alpha.shape + (1,) * (real.ndim - 1)).astype(real.dtype)
  x_hat = a * real + (1.0 - a) * fake
  grads = _input_gradients(critic_fn, x_hat)
  return jnp.square(_safe_norm(jnp.sum(jnp.square(grads), axis=-1)) - 1.0)


def r1_penalty(critic_fn: Critic, real: jax.Array) -> jax.Array:
  """R1 penalty ``||grad_x critic(x)||_2^2`` on real data (Mescheder et al. 2018).

  A squared norm, so no square root and nothing singular at a zero gradient.
  The same per-example caveat as :func:`gradient_penalty` applies (no batch
  statistics in the critic). Mescheder et al. add ``gamma / 2`` times its mean
  to the discriminator's loss.

  Args:
    critic_fn: ``[B, ...] -> [B]`` critic / discriminator logits.
    real: data, shape ``[B, ...]``.

  Returns:
    Penalty per example, shape ``[B]``.

  Example:
    >>> import jax.numpy as jnp
    >>> w = jnp.array([3.0, 4.0])
    >>> r1_penalty(lambda x: x @ w, jnp.array([[1.0, 2.0], [-1.0, 0.5]]))
    Array([25., 25.], dtype=float32)
  """
  return jnp.sum(jnp.square(_input_gradients(critic_fn, real)), axis=-1)
