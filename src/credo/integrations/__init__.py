"""credo's credit inside the RL engines people already train with.

* :mod:`credo.integrations.trl`: ``CredoGRPOTrainer``, a ``trl.GRPOTrainer`` whose advantages come
  from any credo estimator and that takes credo's candidate reward functions (``pip install
  'credo[trl]'``).
* :mod:`credo.integrations.verl`: a ``verl.plugins`` entry point that registers credo's outcome
  estimators as verl advantage estimators ``credo_<name>``.

This package imports neither TRL nor verl: each submodule imports its engine when it is imported
itself, and raises an ImportError naming the extra to install when the engine is missing.
See ``docs/integrations.md``.
"""
