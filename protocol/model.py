"""The strict base of Pintu's typed data: payloads, request bodies and config sections.

Unknown keys are errors (a typo in a config file or a field a peer made up is refused,
never ignored) and instances are frozen. Values are validated in pydantic's default
(lax) mode; a model that must refuse "3" for an int says ``strict=True`` in its own
``model_config``, which pydantic merges with this one.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown keys rejected, instances frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
