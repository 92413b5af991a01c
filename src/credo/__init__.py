"""credo: credit assignment for reinforcement learning, from tabular MDPs to LLM post-training.

Layers (each depends only on the ones above it):

- :mod:`credo.credit`  pure tensor functions that turn rewards into credit
- :mod:`credo.tabular` finite MDPs, dynamic programming and model-free learners
- :mod:`credo.methods` credit beyond outcome rewards
- :mod:`credo.llm`     LLM post-training with pluggable credit
- :mod:`credo.tasks`   offline, verifiable tasks with set-level rewards
- :mod:`credo.cli`     ``credo ...`` entry points
"""

__version__ = "0.1.0"
