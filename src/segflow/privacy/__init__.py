"""Deletion and suppression regulations (GDPR / CCPA): docs/privacy.md.

- :mod:`~segflow.privacy.service`: submit and read regulations, list and lift suppressions
  (the API and the CLI);
- :mod:`~segflow.privacy.store`: regulations and suppressions in the catalog;
- :mod:`~segflow.privacy.suppression`: the in-memory list the collector, the processor and the
  loader consult;
- :mod:`~segflow.privacy.job` and :mod:`~segflow.privacy.runner`: running a regulation in the
  serve process, by asking each store's owner;
- :mod:`~segflow.privacy.compact`: rewriting the stores so erased rows leave no bytes;
- :mod:`~segflow.privacy.retention`: what raw history the rules need, against what is kept.
"""
