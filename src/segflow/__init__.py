"""segflow: self-hosted, real-time behavioral segmentation.

See the README and docs/ for the tour; the packages follow ../DESIGN (docs/architecture.md).
"""

__version__ = "0.1.0.dev0"
