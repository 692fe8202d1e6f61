"""Typed model of a runbook (pydantic), built after the document passed the JSON Schema."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ParamValue = str | int | float | bool


class Param(BaseModel):
    """A runbook parameter: referenced in commands as ``{{ name }}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    type: Literal["string", "integer", "number", "boolean"] = "string"
    default: ParamValue | None = None
    pattern: str | None = None
    enum: list[ParamValue] | None = None
    minimum: float | None = None
    maximum: float | None = None
    secret: bool = False

    @property
    def required(self) -> bool:
        """True when the parameter has no default and must be given with ``--param``."""
        return self.default is None


class Verify(BaseModel):
    """How a step proves it worked.

    Without ``run`` the step's own exit status and output are checked; with ``run`` that
    command is run after the step and checked instead.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: str | None = None
    exit_code: int = 0
    expect: str | None = None
    attempts: int = 1
    interval: float = 0.5


class Step(BaseModel):
    """One step of a runbook."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    description: str
    run: str
    verify: Verify
    timeout: float = 60.0
    retries: int = 0
    rollback: str | None = None
    confirm: str | None = None
    ci_exempt: str | None = None


class Runbook(BaseModel):
    """A parsed, validated runbook."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="File stem, used on the command line.")
    path: str = Field(description="File the runbook was loaded from.")
    title: str
    purpose: str
    ci_exempt: str | None = None
    params: list[Param] = Field(default_factory=list)
    steps: list[Step]

    def step(self, step_id: str) -> Step:
        """Return the step called ``step_id``; raises ``KeyError`` when there is none."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def param(self, name: str) -> Param:
        """Return the parameter called ``name``; raises ``KeyError`` when there is none."""
        for param in self.params:
            if param.name == name:
                return param
        raise KeyError(name)
