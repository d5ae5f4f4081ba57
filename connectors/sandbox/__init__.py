"""Provider-neutral sandbox parts: the synthetic company, paging, faults and control API."""

from connectors.sandbox.dataset import (
    Account,
    Company,
    Deal,
    Deletion,
    MutationResult,
    Rep,
    StageDef,
    StageMove,
)
from connectors.sandbox.generator import generate_company

__all__ = [
    "Account",
    "Company",
    "Deal",
    "Deletion",
    "MutationResult",
    "Rep",
    "StageDef",
    "StageMove",
    "generate_company",
]
