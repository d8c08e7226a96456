"""Tests for genjax.objectives.vq against brute force, numpy and exact gradients."""

import doctest
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from genjax.objectives import vq


def _rng(seed=0):
  return np.random.default_rng(seed)


def _f32(a):
  return jnp.asarray(a, jnp.float32)


# ---------------------------------------------------------------------------
# Quantization, straight-through and losses.
# ---------------------------------------------------------------------------


def test_quantize_matches_brute_force_argmin():
  rng = _rng(0)
  z_e = rng.normal(size=(4, 3, 3, 5))
  codebook = rng.normal(size=(11, 5))
  z_q, idx, dist = vq.quantize(_f32(z_e), _f32(codebook))
  diff = z_e[..., None, :] - codebook  # [4, 3, 3, K, D]
  want_dist = np.sum(diff**2, axis=-1)
  want_idx = np.argmin(want_dist, axis=-1)
  assert idx.dtype == jnp.int32 and idx.shape == (4, 3, 3)
  assert dist.shape == (4, 3, 3, 11) and z_q.shape == z_e.shape
  np.testing.assert_array_equal(idx, want_idx)
  np.testing.assert_allclose(dist, want_dist, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(z_q, codebook[want_idx], rtol=1e-6)


def test_straight_through_has_identity_jacobian_for_the_encoder():
  rng = _rng(1)
  z_e = _f32(rng.normal(size=(3, 2, 4)))
  codebook = _f32(rng.normal(size=(6, 4)))
  w = _f32(rng.normal(size=(3, 2, 4)))

  def f(z):
    z_q, _, _ = vq.quantize(z, codebook)
    return jnp.sum(w * vq.straight_through(z, z_q))

  z_q, _, _ = vq.quantize(z_e, codebook)
  np.testing.assert_allclose(vq.straight_through(z_e, z_q), z_q, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(jax.jit(jax.grad(f))(z_e), w)
  # No gradient reaches the codebook through the straight-through path.
  g_cb = jax.jit(
    jax.grad(lambda cb: jnp.sum(w * vq.straight_through(z_e, vq.quantize(z_e, cb)[0])))
  )(codebook)
  np.testing.assert_array_equal(g_cb, np.zeros_like(g_cb))


def test_vq_loss_stop_gradients():
  rng = _rng(2)
  beta = 0.3
  z_e = _f32(rng.normal(size=(2, 3, 3, 4)))
  codebook = _f32(rng.normal(size=(5, 4)))
  num_elems = 3 * 3 * 4

  def losses(z, cb):
    z_q, _, _ = vq.quantize(z, cb)
    codebook_loss, commitment_loss = vq.vq_losses(z, z_q, beta)
    return codebook_loss.sum(), commitment_loss.sum()

  (cb_dz, cb_dcb), (cm_dz, cm_dcb) = jax.jit(jax.jacrev(losses, argnums=(0, 1)))(z_e, codebook)
  z_q, idx, _ = vq.quantize(z_e, codebook)
  np.testing.assert_array_equal(cb_dz, np.zeros_like(cb_dz))
  np.testing.assert_array_equal(cm_dcb, np.zeros_like(cm_dcb))
  want_cm_dz = 2 * beta * (np.asarray(z_e) - np.asarray(z_q)) / num_elems
  np.testing.assert_allclose(cm_dz, want_cm_dz, rtol=1e-5, atol=1e-7)
  # Codebook gradient: -2 (z_e - e_k) / num_elems summed over the vectors assigned to k.
  want_cb = np.zeros((5, 4))
  np.add.at(want_cb, np.asarray(idx).ravel(), -2 * (z_e - z_q).reshape(-1, 4) / num_elems)
  assert np.abs(cb_dcb).sum() > 0
  np.testing.assert_allclose(cb_dcb, want_cb, rtol=1e-5, atol=1e-7)
  # Values: per-example means of squared errors.
  cb_loss, cm_loss = vq.vq_losses(z_e, z_q, beta)
  want = np.mean((np.asarray(z_e) - np.asarray(z_q)) ** 2, axis=(1, 2, 3))
  np.testing.assert_allclose(cb_loss, want, rtol=1e-6)
  np.testing.assert_allclose(cm_loss, beta * want, rtol=1e-6)


# ---------------------------------------------------------------------------
# EMA codebook.
# ---------------------------------------------------------------------------


def test_ema_update_matches_hand_computed_step():
  rng = _rng(3)
  k, d, n, decay, eps = 4, 2, 6, 0.9, 1e-3
  cluster_size = rng.uniform(0.5, 3.0, size=k)
  embed_sum = rng.normal(size=(k, d))
  z = rng.normal(size=(n, d))
  idx = np.array([0, 2, 2, 0, 0, 2])  # codes 1 and 3 unused
  state = vq.EMAState(_f32(cluster_size), _f32(embed_sum))
  new_state, codebook = vq.ema_update(state, _f32(z), jnp.asarray(idx), decay, eps)

  counts = np.array([3.0, 0.0, 3.0, 0.0])
  sums = np.stack([z[idx == j].sum(0) if (idx == j).any() else np.zeros(d) for j in range(k)])
  cs = decay * cluster_size + (1 - decay) * counts
  es = decay * embed_sum + (1 - decay) * sums
  total = cs.sum()
  smoothed = (cs + eps) / (total + k * eps) * total
  np.testing.assert_allclose(new_state.cluster_size, cs, rtol=1e-6)
  np.testing.assert_allclose(new_state.embed_sum, es, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(codebook, es / smoothed[:, None], rtol=1e-5, atol=1e-6)


def test_laplace_smoothing_keeps_unused_codes_finite():
  # Sonnet-style zero-initialised averages: unused codes have cluster_size 0.
  k, d = 5, 3
  state = vq.EMAState(jnp.zeros(k), jnp.zeros((k, d)))
  z = _f32(_rng(4).normal(size=(8, d)))
  new_state, codebook = vq.ema_update(state, z, jnp.zeros(8, jnp.int32), decay=0.99)
  assert np.all(np.isfinite(codebook))
  np.testing.assert_array_equal(codebook[1:], np.zeros((k - 1, d)))
  np.testing.assert_allclose(codebook[0], np.asarray(z).mean(0), rtol=1e-3)
  # Without smoothing the unused codes would be 0 / 0.
  assert np.all(np.isnan(np.asarray(new_state.embed_sum[1:]) / new_state.cluster_size[1:, None]))


def test_ema_init_reproduces_codebook_and_unused_codes_decay_slowly():
  codebook = _f32(_rng(5).normal(size=(4, 3)))
  state = vq.ema_init(codebook)
  np.testing.assert_array_equal(state.cluster_size, np.ones(4))
  np.testing.assert_array_equal(state.embed_sum, codebook)
  z = _f32(_rng(6).normal(size=(10, 3)))
  _, new = vq.ema_update(state, z, jnp.zeros(10, jnp.int32), decay=0.99)
  # Code 3 was not used: it stays close to its initial value.
  np.testing.assert_allclose(new[3], codebook[3], rtol=0.02)


def test_ema_update_with_axis_name_equals_full_batch_update():
  devices = np.asarray(jax.devices()[:4])
  mesh = Mesh(devices, ("data",))
  rng = _rng(7)
  n = 4 * len(devices)
  z = _f32(rng.normal(size=(n, 3)))
  idx = jnp.asarray(rng.integers(0, 5, size=n))
  state = vq.ema_init(_f32(rng.normal(size=(5, 3))))
  want_state, want = vq.ema_update(state, z, idx)

  @functools.partial(jax.shard_map, mesh=mesh, in_specs=(P(), P("data"), P("data")), out_specs=P())
  def sharded(state, z, idx):
    return vq.ema_update(state, z, idx, axis_name="data")

  got_state, got = jax.jit(sharded)(state, z, idx)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got_state.cluster_size, want_state.cluster_size, rtol=1e-6)


# ---------------------------------------------------------------------------
# Dead codes, usage and perplexity.
# ---------------------------------------------------------------------------


def test_restart_dead_codes_replaces_exactly_low_usage_entries():
  rng = _rng(8)
  codebook = _f32(rng.normal(size=(6, 3)))
  usage = jnp.array([5.0, 0.1, 2.0, 0.0, 0.99, 1.0])
  candidates = _f32(rng.normal(size=(10, 3)))
  fn = jax.jit(vq.restart_dead_codes)
  new, num = fn(codebook, usage, candidates, jax.random.key(0), 1.0)
  dead = np.asarray(usage) < 1.0
  assert int(num) == dead.sum() == 3
  np.testing.assert_array_equal(new[~dead], codebook[~dead])
  cand = np.asarray(candidates)
  picked = []
  for row in np.asarray(new)[dead]:
    matches = np.flatnonzero(np.all(cand == row, axis=1))
    assert matches.size == 1
    picked.append(matches[0])
  assert len(set(picked)) == len(picked)  # drawn without replacement


def test_ema_restart_dead_codes_resets_the_averages():
  rng = _rng(9)
  codebook = _f32(rng.normal(size=(4, 2)))
  state = vq.EMAState(jnp.array([3.0, 0.01, 2.0, 0.02]), codebook * 2.0)
  candidates = _f32(rng.normal(size=(6, 2)))
  new_state, new, num = vq.ema_restart_dead_codes(
    state, codebook, candidates, jax.random.key(1), 0.5
  )
  assert int(num) == 2
  np.testing.assert_array_equal(new_state.cluster_size, [3.0, 1.0, 2.0, 1.0])
  np.testing.assert_array_equal(new_state.embed_sum[1::2], new[1::2])
  np.testing.assert_array_equal(new_state.embed_sum[::2], state.embed_sum[::2])
  # With no assignments, the next EMA step keeps the restarted codes.
  _, after = vq.ema_apply(new_state, jnp.zeros(4), jnp.zeros((4, 2)), 0.99, 1e-5)
  np.testing.assert_allclose(after[1::2], new[1::2], rtol=1e-4)


def test_codebook_usage_and_perplexity():
  idx = jnp.asarray(_rng(10).integers(0, 7, size=(5, 4, 4)))
  counts = vq.codebook_usage(idx, 9)
  assert counts.dtype == jnp.int32
  np.testing.assert_array_equal(counts, np.bincount(np.asarray(idx).ravel(), minlength=9))
  np.testing.assert_allclose(vq.perplexity(jnp.full(16, 3)), 16.0, rtol=1e-6)
  np.testing.assert_allclose(vq.perplexity(jnp.array([0, 0, 12, 0])), 1.0, rtol=1e-6)
  p = np.asarray(counts, np.float64) / counts.sum()
  want = np.exp(-np.sum(p[p > 0] * np.log(p[p > 0])))
  np.testing.assert_allclose(vq.perplexity(counts), want, rtol=1e-5)


def test_docstring_examples():
  result = doctest.testmod(vq, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0
