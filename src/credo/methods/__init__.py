"""credo.methods: credit assignment beyond outcome rewards (docs/methods.md).

* :mod:`credo.methods.her`: Hindsight Experience Replay (goal-conditioned replay buffer with the
  ``final``, ``future`` and ``episode`` strategies), bit flipping, a DQN agent;
* :mod:`credo.methods.shaping`: potential-based reward shaping of finite MDPs and its grid-world
  demonstrations;
* :mod:`credo.methods.coma`: COMA's counterfactual advantage, a learned centralised critic (Q for every
  action of one agent in one pass, TD(lambda) targets) and two cooperative demonstrations (a 5-step
  relay game and a one-step team game);
* :mod:`credo.methods.attribution`: attention and integrated-gradient token attribution for causal LMs.
"""
