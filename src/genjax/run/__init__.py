"""The top layer: build an experiment, train it, checkpoint it, evaluate it.

``build`` (:mod:`genjax.run.experiment`) turns a config into data, family and
devices; ``train_and_evaluate`` (:mod:`genjax.run.loop`) trains with
checkpoints and resumes; ``evaluate_workdir`` (:mod:`genjax.run.evaluation`)
evaluates a saved run. The entry points ``genjax.main`` and
``genjax.evaluate`` are thin command-line callers of these.
"""
