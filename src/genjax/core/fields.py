"""Config sections declared as fields with rules; validation messages come from the rules.

A section is a mapping ``name -> Field``. The common sections live in
:mod:`genjax.config`; each family declares the sections it owns (``gan``,
``diffusion``, ...) and may narrow a common field's rule (which
``model.architecture`` values it builds). :func:`section_errors` turns every
broken rule into one line that names the field, its value and what is allowed.
"""

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from typing import Any

Section = Mapping[str, "Field"]


@dataclasses.dataclass(frozen=True)
class Field:
  """One config field: its default, what it means, and the values it accepts.

  Attributes:
    default: the value of a config that does not set it.
    doc: what the field means (shown by the config's ``--help``-style listings).
    choices: the allowed values, in the order messages list them.
    ge, gt, le, lt: numeric bounds (``value >= ge``, ``value > gt``, ...).
    integer: the value must be an ``int``.
    odd: the value must be odd (with ``integer``).
    positive_ints: the value is a sequence of positive integers.
    nonempty: with ``positive_ints``, the sequence must not be empty.
    only_with: ``(field, values)``: the field has an effect only while that other
      field (dotted, from the config's root) holds one of ``values``; a
      non-default value is refused otherwise, since it would silently do nothing.
      Several such pairs in a list: an effect while any of them holds.
  """

  default: Any
  doc: str = ""
  choices: Sequence[Any] | None = None
  ge: float | None = None
  gt: float | None = None
  le: float | None = None
  lt: float | None = None
  integer: bool = False
  odd: bool = False
  positive_ints: bool = False
  nonempty: bool = False
  only_with: tuple[str, Sequence[Any]] | list[tuple[str, Sequence[Any]]] | None = None

  def inert(self, root) -> str | None:
    """Why the field does nothing in config ``root`` ("unless ..."), or None if it acts.

    Raises KeyError when a deciding field is not in ``root``.
    """
    if self.only_with is None:
      return None
    pairs = self.only_with if isinstance(self.only_with, list) else [self.only_with]
    if any(get(root, other) in allowed for other, allowed in pairs):
      return None
    return " or ".join(
      f"config.{other} is {' or '.join(map(str, allowed))}" for other, allowed in pairs
    )

  def error(self, value: Any) -> str | None:
    """Why ``value`` is not allowed, or None when it is."""
    if self.choices is not None:
      if value not in self.choices:
        allowed = "allowed: " + ", ".join(repr(c) if c == "" else str(c) for c in self.choices)
        close = difflib.get_close_matches(str(value), [str(c) for c in self.choices], n=1)
        return (f"did you mean {close[0]!r}? " if close else "") + allowed
      return None
    if self.positive_ints:
      items = value if isinstance(value, (tuple, list)) else None
      ok = items is not None and all(_is_int(v) and v >= 1 for v in items)
      if self.nonempty:
        return None if ok and items else "must be a non-empty sequence of positive integers"
      return None if ok else "must be positive integers"
    if self.integer:
      ok = _is_int(value) and (self.ge is None or value >= self.ge)
      ok = ok and (not self.odd or value % 2 == 1)
      kind = "an odd integer" if self.odd else "an integer"
      return None if ok else f"must be {kind} >= {_number(self.ge)}"
    return self._bounds_error(value)

  def _bounds_error(self, value) -> str | None:
    low = ("[", self.ge) if self.ge is not None else ("(", self.gt)
    high = ("]", self.le) if self.le is not None else (")", self.lt)
    if low[1] is None and high[1] is None:
      return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = number and (low[1] is None or value > low[1] or (low[0] == "[" and value == low[1]))
    ok = ok and (high[1] is None or value < high[1] or (high[0] == "]" and value == high[1]))
    if ok:
      return None
    if high[1] is None:
      return f"must be {'>=' if low[0] == '[' else '>'} {_number(low[1])}"
    if low[1] is None:
      return f"must be {'<=' if high[0] == ']' else '<'} {_number(high[1])}"
    return f"must be in {low[0]}{_number(low[1])}, {_number(high[1])}{high[0]}"


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _number(x: float) -> str:
  return str(int(x)) if float(x).is_integer() else str(x)


def defaults(section: Section) -> dict[str, Any]:
  """The section's default values, ``{name: default}``."""
  return {name: f.default for name, f in section.items()}


def section_errors(
  prefix: str, values: Mapping[str, Any], section: Section, root=None
) -> list[str]:
  """One ``"config.<prefix>.<name>=<value>: <why>"`` line per broken rule.

  Args:
    prefix: the section's dotted path ("" for top-level fields).
    values: the section's values (a ConfigDict or dict).
    section: its fields.
    root: the whole config, to resolve ``only_with`` (default: ``values``).
  """
  errors = []
  for name, f in section.items():
    if name not in values:
      continue
    value = values[name]
    path = f"{prefix}.{name}" if prefix else name
    why = f.error(value)
    if why is None and value != f.default:
      unless = f.inert(root if root is not None else values)
      if unless:
        why = f"has no effect unless {unless} (leave it at {f.default!r})"
    if why is not None:
      errors.append(f"config.{path}={_show(value)}: {why}")
  return errors


def reset_ignored(config, section: Section, prefix: str, keep=()) -> None:
  """Puts fields whose ``only_with`` condition fails back at their defaults.

  A config saved before such a field was refused may hold a value that never
  had an effect, and an override (another sampler for one evaluation) may make
  a run's setting inert; resetting it keeps the run loadable and changes nothing.
  Dotted names in ``keep`` (what the user just set) stay, to be refused.
  """
  values = get(config, prefix) if prefix else config
  for name, f in section.items():
    if f"{prefix}.{name}" in keep:
      continue
    if name in values:
      try:
        if f.inert(config):
          values[name] = f.default
      except KeyError:  # A deciding field's section is not in this config.
        continue


def get(config, dotted: str):
  """``config.a.b`` for ``"a.b"``."""
  for part in dotted.split("."):
    config = config[part]
  return config


def _show(value) -> str:
  return repr(tuple(value)) if isinstance(value, list) else repr(value)
