"""Training the layers of :mod:`ndconv.nn`: losses, optimizers, the loop, data, models.

- :mod:`~ndconv.training.losses`: MSE, cross-entropy, ... with their gradients;
- :mod:`~ndconv.training.optim`: SGD, Adam, AdamW (PyTorch's update rules);
- :mod:`~ndconv.training.train`: ``fit``, ``evaluate``, ``predict``;
- :mod:`~ndconv.training.data`: the bundled datasets (digits, faces);
- :mod:`~ndconv.training.models`: the small networks that the examples, the
  CLI, the report and the benchmarks train, one definition each.

Each is also importable by its short name (``ndconv.losses``, ``ndconv.optim``,
``ndconv.train``, ``ndconv.data``, ``ndconv.models``).
"""
