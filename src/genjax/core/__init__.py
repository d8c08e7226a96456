"""The bottom layer: train state, optimizers, data-parallel placement, per-example keys.

Everything here is model-agnostic and imports nothing else of genjax.
"""
