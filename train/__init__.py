"""Training for VDSR: data pipeline (:mod:`train.data`) and loop (:mod:`train.loop`).

Uses :mod:`vdsr_deploy`; the library never imports this package (only the CLI's ``train``
command does, lazily).
"""
