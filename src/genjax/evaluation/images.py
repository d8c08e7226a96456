"""Host-side (numpy/pillow/matplotlib) image grids, PNG output and latent code layouts."""

from __future__ import annotations

import math
import os
import textwrap
from typing import Sequence

import numpy as np
from etils import epath
from PIL import Image, ImageDraw, ImageFont
from scipy.stats import norm


def make_grid(
  images: np.ndarray, nrow: int | None = None, padding: int = 2, pad_value: float = 1.0
) -> np.ndarray:
  """Tiles a batch of images into one image, row-major.

  Image `k` sits at grid row `k // nrow`, column `k % nrow`, with its top-left
  pixel at `(padding + row * (H + padding), padding + col * (W + padding))`.

  Args:
      images: Floats in [0, 1], shape `[N, H, W, C]` (C in {1, 3}) or `[N, H, W]`.
      nrow: Images per grid row; defaults to `ceil(sqrt(N))`.
      padding: Pixels of border around and between images.
      pad_value: Fill value of the border and of empty cells.

  Returns:
      Array `[rows * (H + padding) + padding, nrow * (W + padding) + padding, C]`.
  """
  images = np.asarray(images, dtype=np.float32)
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or images.shape[0] == 0:
    raise ValueError(f"make_grid expects a non-empty [N, H, W, C] array, got {images.shape}.")
  n, height, width, channels = images.shape
  ncol = nrow if nrow is not None else math.ceil(math.sqrt(n))
  nrows = math.ceil(n / ncol)
  grid = np.full(
    (nrows * (height + padding) + padding, ncol * (width + padding) + padding, channels),
    pad_value,
    dtype=np.float32,
  )
  for k in range(n):
    top = padding + (k // ncol) * (height + padding)
    left = padding + (k % ncol) * (width + padding)
    grid[top : top + height, left : left + width] = images[k]
  return grid


def readable(image: np.ndarray, long_side: int = 256) -> np.ndarray:
  """``image [H, W, ...]`` enlarged by a whole factor (pixels kept sharp) to at least ``long_side``."""
  factor = max(1, -(-long_side // max(image.shape[:2])))
  return np.repeat(np.repeat(np.asarray(image), factor, axis=0), factor, axis=1)


def titled(image: np.ndarray, lines: list[str], font_size: int = 12) -> np.ndarray:
  """``image [H, W, C]`` (floats in [0, 1] or uint8) under a white band holding ``lines``.

  Lines are wrapped to the image's width. Returns uint8 ``[H + band, W, C]``.
  """
  pixels = to_uint8(image)
  gray = pixels.ndim == 2 or pixels.shape[-1] == 1
  picture = Image.fromarray(pixels.reshape(pixels.shape[:2]) if gray else pixels)
  font = ImageFont.load_default(size=font_size)
  width = max(8, int(picture.width / (0.6 * font_size)))
  wrapped = [part for line in lines for part in textwrap.wrap(line, width)]
  band = len(wrapped) * (font_size + 3) + 6
  canvas = Image.new(picture.mode, (picture.width, picture.height + band), "white")
  draw = ImageDraw.Draw(canvas)
  for i, line in enumerate(wrapped):
    draw.text((3, 3 + i * (font_size + 3)), line, fill="black", font=font)
  canvas.paste(picture, (0, band))
  out = np.asarray(canvas)
  return out[..., None] if gray else out


def to_uint8(image: np.ndarray) -> np.ndarray:
  """Converts floats in [0, 1] to uint8 with clipping (uint8 input passes through)."""
  image = np.asarray(image)
  if image.dtype == np.uint8:
    return image
  return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_png(path: str | os.PathLike, grid: np.ndarray) -> None:
  """Writes an image to a PNG file, creating parent directories.

  Args:
      path: Destination file.
      grid: Floats in [0, 1] (or uint8), shape `[H, W]`, `[H, W, 1]` or `[H, W, 3]`.
  """
  pixels = to_uint8(grid)
  if pixels.ndim == 3 and pixels.shape[-1] == 1:
    pixels = pixels[..., 0]  # Saved as 8-bit grayscale ("L").
  path = epath.Path(path)  # Local or gs:// alike.
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("wb") as f:
    Image.fromarray(pixels).save(f, format="PNG")


def latent_traversal_codes(
  base_code: np.ndarray, dims: Sequence[int], values: Sequence[float]
) -> np.ndarray:
  """Varies one latent dimension at a time around a base code.

  Args:
      base_code: Code `[D]`.
      dims: Dimensions to traverse.
      values: Values each traversed dimension is set to.

  Returns:
      Codes `[len(dims) * len(values), D]`; row `i * len(values) + j` equals
      `base_code` with `dims[i]` set to `values[j]`.
  """
  base = np.asarray(base_code, dtype=np.float32)
  codes = np.tile(base, (len(dims) * len(values), 1))
  for i, dim in enumerate(dims):
    codes[i * len(values) : (i + 1) * len(values), dim] = values
  return codes


def manifold_grid_codes(n: int = 20) -> np.ndarray:
  """2-D latent grid through the Gaussian inverse CDF (Kingma & Welling, Fig. 4).

  Evenly spaced quantiles `linspace(0.05, 0.95, n)` are mapped through the standard
  normal inverse CDF, so the grid covers the prior's mass, not a uniform box.

  Args:
      n: Grid points per axis.

  Returns:
      Codes `[n * n, 2]`, row-major: row `i * n + j` is `(x_j, y_i)` with x
      increasing along columns and y decreasing down rows (image orientation).
  """
  ticks = norm.ppf(np.linspace(0.05, 0.95, n))
  # Force exact symmetry: ppf(q) and -ppf(1 - q) differ by rounding otherwise.
  ticks = 0.5 * (ticks - ticks[::-1])
  xs, ys = np.meshgrid(ticks, ticks[::-1])
  return np.stack([xs.ravel(), ys.ravel()], axis=-1).astype(np.float32)


def interpolation_codes(
  z0: np.ndarray, z1: np.ndarray, steps: int, spherical: bool = False
) -> np.ndarray:
  """Interpolates between two codes, endpoints included exactly.

  Args:
      z0: Start code `[D]`.
      z1: End code `[D]`.
      steps: Number of codes (>= 2).
      spherical: Use slerp (better for Gaussian latents, keeps norms typical).

  Returns:
      Codes `[steps, D]` with `codes[0] == z0` and `codes[-1] == z1`.
  """
  if steps < 2:
    raise ValueError(f"steps must be >= 2, got {steps}.")
  z0 = np.asarray(z0, dtype=np.float64)
  z1 = np.asarray(z1, dtype=np.float64)
  t = np.linspace(0.0, 1.0, steps)[:, None]
  w0, w1 = 1.0 - t, t
  if spherical:
    cos = np.dot(z0, z1) / max(np.linalg.norm(z0) * np.linalg.norm(z1), 1e-12)
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if np.sin(omega) > 1e-6:  # Nearly parallel codes: fall back to linear.
      w0 = np.sin((1.0 - t) * omega) / np.sin(omega)
      w1 = np.sin(t * omega) / np.sin(omega)
  codes = (w0 * z0 + w1 * z1).astype(np.float32)
  codes[0], codes[-1] = z0, z1
  return codes


def render_points(
  points: np.ndarray,
  modes: np.ndarray | None = None,
  title: str = "",
  labels: np.ndarray | None = None,
  surface: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
  """Draws 2-D points (and optionally a scalar field beneath them) as an image.

  Args:
      points: Points `[N, 2]`.
      modes: Optional mode centres `[M, 2]`, drawn as red crosses.
      title: Plot title.
      labels: Optional integer labels `[N]` used to colour the points.
      surface: Optional `(xs [G], ys [G], values [G, G])`, e.g. a discriminator's
          output on a grid (`values[i, j]` at `(xs[j], ys[i])`), drawn as filled contours.

  Returns:
      RGB image `[500, 500, 3]` in [0, 1].
  """
  # Figure + Agg canvas directly: no pyplot global state, safe off the main thread.
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  points = np.asarray(points)
  fig = Figure(figsize=(5, 5), dpi=100)
  canvas = FigureCanvasAgg(fig)
  ax = fig.add_subplot(1, 1, 1)
  if surface is not None:
    xs, ys, values = (np.asarray(a) for a in surface)
    filled = ax.contourf(xs, ys, values, levels=20, cmap="RdBu_r", alpha=0.8)
    fig.colorbar(filled, ax=ax, fraction=0.046, pad=0.04)
  cmap = "tab10" if labels is not None else None
  color = labels if labels is not None else ("black" if surface is not None else None)
  ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.5, c=color, cmap=cmap)
  if modes is not None:
    modes = np.asarray(modes)
    ax.scatter(modes[:, 0], modes[:, 1], s=60, c="red", marker="x", label="modes")
    ax.legend(loc="upper right")
  ax.set_title(title)
  ax.set_aspect("equal", adjustable="datalim" if surface is None else "box")
  canvas.draw()
  return np.asarray(canvas.buffer_rgba())[..., :3].astype(np.float32) / 255.0


def render_histogram(counts: np.ndarray, title: str = "", sort: bool = True) -> np.ndarray:
  """Draws non-negative counts (e.g. codebook usage) as a bar chart image.

  Args:
      counts: Counts `[K]`.
      title: Plot title.
      sort: Sort the bars by count, most used first (shows how many codes carry the mass).

  Returns:
      RGB image `[300, 800, 3]` in [0, 1].
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  counts = np.asarray(counts, np.float64)
  if counts.ndim != 1 or np.any(counts < 0):
    raise ValueError(f"counts must be a non-negative vector, got shape {counts.shape}")
  shown = np.sort(counts)[::-1] if sort else counts
  fig = Figure(figsize=(8, 3), dpi=100)
  canvas = FigureCanvasAgg(fig)
  ax = fig.add_subplot(1, 1, 1)
  ax.bar(np.arange(len(shown)), shown, width=1.0, color="tab:blue")
  ax.set_xlabel("code (sorted by use)" if sort else "code")
  ax.set_ylabel("count")
  ax.set_xlim(-0.5, len(shown) - 0.5)
  ax.set_title(title, fontsize=9)
  fig.tight_layout()
  canvas.draw()
  return np.asarray(canvas.buffer_rgba())[..., :3].astype(np.float32) / 255.0


def scatter_png(
  path: str | os.PathLike,
  points: np.ndarray,
  modes: np.ndarray | None = None,
  title: str = "",
  labels: np.ndarray | None = None,
) -> None:
  """Saves a scatter plot of 2-D points (e.g. GAN samples or latent codes).

  Args:
      path: Destination PNG file (parent directories are created).
      points: Points `[N, 2]`.
      modes: Optional mode centres `[M, 2]`, drawn as red crosses.
      title: Plot title.
      labels: Optional integer labels `[N]` used to colour the points.
  """
  save_png(path, render_points(points, modes, title, labels))
