"""The runtimes, one folder each, behind the one runner interface (:mod:`vdsr_deploy.runner`):
``descriptor`` (what a runtime declares: :class:`~vdsr_deploy.backends.descriptor.Backend`),
``registry`` (the one list of runtimes, :class:`~vdsr_deploy.backends.registry.RunnerSpec`
and ``--backend auto``), ``device`` (``--device`` resolution), ``torch/``, ``onnxruntime/``
and ``tensorrt/``. Each runtime's package is its descriptor and imports its runtime lazily;
this package imports none of them."""
