"""Errors raised by ``segflow.ml``.

::

    SegflowError
    ├── ValidationError
    │   └── MLInputError          bad data or parameters for a model (column, file, target)
    ├── NotFoundError
    │   └── ModelNotFound         no model or run with that name / id
    └── TerminalError
        └── FitError              the optimiser or learner could not produce a model
"""

from __future__ import annotations

from typing import Any

from segflow.errors import NotFoundError, TerminalError, ValidationError


class MLInputError(ValidationError):
    """Bad input for a model (a missing column, an unreadable file, a degenerate target).

    >>> MLInputError("amount_col", "column not found").field
    'amount_col'
    """

    code = "ml_input_error"


class ModelNotFound(NotFoundError):
    """No model (or job run) with this name.

    >>> ModelNotFound("churn").name
    'churn'
    """

    code = "model_not_found"

    def __init__(self, name: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"no model named {name!r}", details=details)
        self.name = name


class FitError(TerminalError):
    """A model could not be fitted (the optimiser failed, a single class in the labels...).

    >>> FitError("bgnbd", "optimiser did not converge").model
    'bgnbd'
    """

    code = "fit_error"

    def __init__(self, model: str, reason: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{model}: {reason}", details=details)
        self.model = model
        self.reason = reason
