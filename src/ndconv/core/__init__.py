"""The operation: N-d cross-correlation with PyTorch's semantics, and its algorithms.

- :mod:`~ndconv.core.functional`: ``conv``, ``conv_transpose``, ``correlate``,
  ``convolve`` and their exact gradients (also ``ndconv.functional``);
- :mod:`~ndconv.core.pooling`: max and average pooling with gradients;
- :mod:`~ndconv.core.algorithms`: one record per algorithm (direct, GEMM, FFT,
  Winograd, depthwise, implicit, scatter, separable, torch, JAX) and the
  chooser behind ``method='auto'`` (also ``ndconv.algorithms``);
- the facts everything above shares, one home each: argument forms and output
  sizes (``_args``), windows, padding and boundary modes (``_windows``),
  dtypes (``_dtypes``), the memory guard (``_memory``), the array-library seam
  (``_backends``), optional extras (``_extras``) and type aliases (``_typing``).

Nothing in ``core`` imports the layers, the lecture, images or files.
"""
