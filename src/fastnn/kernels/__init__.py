"""Numba kernels: every number-crunching loop of fastnn lives here.

Conventions (see the house style): outputs first, then inputs, then scalars;
kernels return nothing; each docstring says which outputs are overwritten and
which accumulated. Nothing here imports the layer code.
"""
