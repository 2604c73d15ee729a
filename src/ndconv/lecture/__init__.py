"""The lecture "From MLP to convolution" as code: its derivation and its accounting.

- :mod:`~ndconv.lecture.derive`: a fully connected weight re-indexed, tied
  (translation invariance) and localized (locality) into a kernel, and back
  (also ``ndconv.derive``);
- :mod:`~ndconv.lecture.properties`: the two principles as measurable
  properties of any layer (also ``ndconv.properties``);
- :mod:`~ndconv.lecture.plan`: parameters, bytes, FLOPs and receptive fields
  of a layer before it is built (the lecture's 14.4 GB layer), and the memory
  limit (also ``ndconv.plan``);
- :mod:`~ndconv.lecture.explain`: the sum behind one output element, written
  out (``ndconv explain``);
- :mod:`~ndconv.lecture.experiments`: the lecture's claim measured, an MLP, a
  locally connected net and a CNN on shifted test images over seeds.

The tour page that teaches all of it is :mod:`ndconv.report`; the explorer
that lets a student play with it is :mod:`ndconv.explore`.
"""
