# distutils: language = c++
# cython: language_level=3, boundscheck=False, wraparound=False
"""The compiled rule kernel (placeholder until the executor lands)."""

def version():
    return 0
