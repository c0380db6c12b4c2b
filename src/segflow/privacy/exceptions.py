"""Errors of ``segflow.privacy``.

::

    SegflowError
    ├── ValidationError
    │   └── (a bad regulation request: ``field`` names the identifier, ``reason`` says why)
    ├── NotFoundError
    │   └── RegulationNotFound          no regulation / suppression with this id
    ├── ConflictError
    │   └── RegulationsUnsupported      this deployment cannot carry regulations out (Kafka)
    ├── ConfigError
    │   └── RetentionTooShort           a rule needs more raw history than is kept
    └── TransientError
        └── StepTimeout                 an owner (processor, loader, delivery) did not answer
"""

from __future__ import annotations

from segflow.errors import ConfigError, ConflictError, NotFoundError, TransientError


class RegulationNotFound(NotFoundError):
    code = "regulation_not_found"


class RegulationsUnsupported(ConflictError):
    code = "regulations_unsupported"


class RetentionTooShort(ConfigError):
    code = "retention_too_short"


class StepTimeout(TransientError):
    code = "regulation_step_timeout"
