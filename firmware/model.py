"""The base of every typed configuration section: unknown keys are errors."""

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A config section. Unknown keys are rejected, values are not coerced loosely."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)
