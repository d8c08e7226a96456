"""Tests for genjax.evaluation.images (host-side numpy/pillow)."""

import numpy as np
import pytest
from PIL import Image

from genjax.evaluation.images import (
  interpolation_codes,
  latent_traversal_codes,
  make_grid,
  manifold_grid_codes,
  save_png,
  scatter_png,
)


@pytest.mark.parametrize("channels", [1, 3])
def test_make_grid_places_images(channels):
  rng = np.random.default_rng(0)
  images = rng.uniform(0.0, 0.9, size=(7, 5, 6, channels)).astype(np.float32)
  pad, nrow = 2, 3
  grid = make_grid(images, nrow=nrow, padding=pad, pad_value=1.0)
  assert grid.shape == (3 * (5 + pad) + pad, nrow * (6 + pad) + pad, channels)
  for k in range(7):
    top = pad + (k // nrow) * (5 + pad)
    left = pad + (k % nrow) * (6 + pad)
    np.testing.assert_array_equal(grid[top : top + 5, left : left + 6], images[k])
  # Borders and the two empty trailing cells hold the pad value.
  np.testing.assert_array_equal(grid[:pad], 1.0)
  np.testing.assert_array_equal(grid[-(5 + pad) :, -2 * (6 + pad) :], 1.0)


def test_make_grid_default_nrow():
  images = np.random.default_rng(1).uniform(size=(10, 4, 4, 1))
  grid = make_grid(images, padding=0)
  assert grid.shape == (3 * 4, 4 * 4, 1)  # ceil(sqrt(10)) = 4 columns, 3 rows.


@pytest.mark.parametrize("channels", [1, 3])
def test_save_png_roundtrip(tmp_path, channels):
  rng = np.random.default_rng(2)
  grid = rng.uniform(-0.2, 1.2, size=(9, 11, channels)).astype(np.float32)
  path = tmp_path / "sub" / "dir" / "grid.png"
  save_png(path, grid)
  with Image.open(path) as img:
    assert img.mode == ("L" if channels == 1 else "RGB")
    pixels = np.asarray(img)
  expected = np.round(np.clip(grid, 0.0, 1.0) * 255).astype(np.uint8)
  np.testing.assert_array_equal(pixels, expected[..., 0] if channels == 1 else expected)


def test_latent_traversal_codes():
  base = np.random.default_rng(3).normal(size=5).astype(np.float32)
  values = [-2.0, 0.5, 3.0]
  codes = latent_traversal_codes(base, dims=[1, 4], values=values)
  assert codes.shape == (6, 5)
  for i, dim in enumerate([1, 4]):
    for j, v in enumerate(values):
      row = codes[i * 3 + j]
      assert row[dim] == np.float32(v)
      others = np.delete(np.arange(5), dim)
      np.testing.assert_array_equal(row[others], base[others])


def test_manifold_grid_codes():
  n = 7
  codes = manifold_grid_codes(n)
  assert codes.shape == (n * n, 2)
  assert np.all(np.isfinite(codes))
  grid = codes.reshape(n, n, 2)
  xs, ys = grid[0, :, 0], grid[:, 0, 1]
  assert np.all(np.diff(xs) > 0)  # x increases along columns
  assert np.all(np.diff(ys) < 0)  # y decreases down rows
  np.testing.assert_allclose(xs, -xs[::-1], atol=1e-6)
  np.testing.assert_allclose(ys, -ys[::-1], atol=1e-6)
  assert xs[n // 2] == pytest.approx(0.0, abs=1e-6)
  np.testing.assert_allclose(xs[-1], 1.6448536, rtol=1e-5)  # Phi^-1(0.95)
  # Every row shares the same x's; every column the same y's.
  np.testing.assert_array_equal(grid[..., 0], np.broadcast_to(xs, (n, n)))
  np.testing.assert_array_equal(grid[..., 1], np.broadcast_to(ys[:, None], (n, n)))


@pytest.mark.parametrize("spherical", [False, True])
def test_interpolation_codes(spherical):
  rng = np.random.default_rng(4)
  z0, z1 = rng.normal(size=(2, 6)).astype(np.float32)
  codes = interpolation_codes(z0, z1, steps=5, spherical=spherical)
  assert codes.shape == (5, 6)
  np.testing.assert_array_equal(codes[0], z0)
  np.testing.assert_array_equal(codes[-1], z1)
  assert np.all(np.isfinite(codes))
  if not spherical:
    np.testing.assert_allclose(codes[2], 0.5 * (z0 + z1), rtol=1e-6)
  else:
    # Slerp between equal-norm codes keeps the norm.
    u = z1 * np.linalg.norm(z0) / np.linalg.norm(z1)
    mid = interpolation_codes(z0, u, steps=3, spherical=True)[1]
    np.testing.assert_allclose(np.linalg.norm(mid), np.linalg.norm(z0), rtol=1e-5)
  with pytest.raises(ValueError):
    interpolation_codes(z0, z1, steps=1)


def test_scatter_png(tmp_path):
  rng = np.random.default_rng(5)
  path = tmp_path / "plots" / "scatter.png"
  scatter_png(path, rng.normal(size=(50, 2)), modes=rng.normal(size=(4, 2)), title="t")
  with Image.open(path) as img:
    assert img.size[0] > 0 and img.size[1] > 0


def test_readable_enlarges_by_a_whole_factor_and_titled_adds_a_band_of_text():
  from genjax.evaluation.images import readable, titled

  grid = np.random.default_rng(0).uniform(size=(34, 66, 1)).astype(np.float32)
  big = readable(grid)
  assert big.shape == (34 * 4, 66 * 4, 1) and max(big.shape[:2]) >= 256
  np.testing.assert_array_equal(big[::4, ::4], grid)  # Pixels repeated, never blended.
  assert readable(np.zeros((300, 10, 3))).shape == (300, 10, 3)
  picture = titled(big, ["vae samples, step 30", "a caption long enough to wrap " * 3])
  band = picture.shape[0] - big.shape[0]
  assert picture.dtype == np.uint8 and picture.shape[1:] == big.shape[1:] and band > 30
  np.testing.assert_array_equal(picture[band:], np.round(big * 255).astype(np.uint8))
  assert picture[:band].min() == 0 and picture[:band].max() == 255  # Black text on white.
