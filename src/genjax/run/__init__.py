"""The top layer: build an experiment, train it, checkpoint it, evaluate it.

``build`` (:mod:`genjax.run.experiment`) turns a config into data, family and
devices; ``train_and_evaluate`` (:mod:`genjax.run.loop`) trains with
checkpoints and resumes; ``evaluate_workdir`` (:mod:`genjax.run.evaluation`)
evaluates a saved run. The entry points ``genjax.main`` and
``genjax.evaluate`` are thin command-line callers of these.
"""

import os

# TensorFlow, which the run layer loads for TensorBoard summaries (and tfds for data),
# reads these once, when it loads: set here, before any module of this layer imports it.
# Its oneDNN notice ignores TF_CPP_MIN_LOG_LEVEL; genjax computes nothing in TensorFlow,
# so turning oneDNN off only silences it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
