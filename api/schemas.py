"""The base of response bodies and the types their fields share, as the OpenAPI declares them."""

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, WithJsonSchema


class Answer(BaseModel):
    """A response body. Its schema lists every field it may hold (additionalProperties is
    false), so the OpenAPI cannot drift from what a route answers unnoticed."""

    model_config = ConfigDict(extra="forbid")


Number = Annotated[Decimal, WithJsonSchema({"type": "number"})]
"""An exact decimal, written as a JSON number literal (api.listing.ApiJSON), never a string."""
