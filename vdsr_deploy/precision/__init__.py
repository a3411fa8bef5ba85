"""Precisions: ``names`` (what ``--precision`` accepts) and ``decision`` (``--precision
auto`` as data with its reason, from the CPU's flags and the measured costs it is given).
Pure: nothing here imports a runtime or measures anything; measuring is
:mod:`vdsr_deploy.runtime.resolve`'s."""
