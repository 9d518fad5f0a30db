"""The shape of the profile and accuracy-table files, validated with pydantic.

These models check what a JSON schema can say (keys, types, ranges, literal values);
:mod:`janus_deploy.profile.table` and :mod:`janus_deploy.calibrate.accuracy` add what needs the
method (token schedules, candidate split points, monotone latencies). :func:`first_error` turns
pydantic's report into one line that names the place (``levels[3].head_ms.5``), the problem and
the value, as the hand-written checks did.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError, field_validator

Ms = StrictInt | StrictFloat  # no booleans, no strings
NonNegInt = StrictInt


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class ModelDoc(_Model):
    name: str
    num_blocks: int = Field(ge=1, strict=True)
    embed_dim: int = Field(ge=1, strict=True)
    num_tokens: int = Field(ge=1, strict=True)
    num_prefix_tokens: int = Field(ge=0, strict=True)
    img_size: StrictInt | tuple[StrictInt, StrictInt]

    @field_validator("img_size")
    @classmethod
    def _positive(cls, v: Any) -> Any:
        if any(x < 1 for x in (v if isinstance(v, tuple) else (v,))):
            raise ValueError(f"must be >= 1 (an integer or [H, W]), got {v!r}")
        return v


class PayloadDoc(_Model):
    bytes: int = Field(ge=0, strict=True)
    encode_ms: Ms = Field(0.0, ge=0)
    decode_ms: Ms = Field(0.0, ge=0)


class SegmentStatDoc(_Model):
    median: Ms = Field(ge=0)
    p95: Ms | None = None
    mean: Ms | None = None
    std: Ms | None = None
    runs: int | None = Field(None, ge=0, strict=True)


class SlowerThanDoc(_Model):
    policy: Literal["exponential", "linear", "constant"]
    alpha: Ms = Field(ge=0)
    total: StrictBool
    head: list[NonNegInt]
    tail: list[NonNegInt]


class LevelDoc(_Model):
    policy: Literal["exponential", "linear", "constant"]
    alpha: Ms = Field(ge=0)
    tokens: list[NonNegInt]
    head_ms: dict[str, Ms]
    tail_ms: dict[str, Ms]
    payload: dict[str, dict[str, PayloadDoc]] = Field(min_length=1)
    segment_ms: list[SegmentStatDoc] | None = None
    slower_than: list[SlowerThanDoc] | None = None  # derived; see profile.dominance

    @field_validator("head_ms", "tail_ms")
    @classmethod
    def _ms(cls, v: dict[str, Any]) -> dict[str, Any]:
        for k, x in v.items():
            if x < 0:
                raise ValueError(f"[{k}] must be a finite number of ms >= 0, got {x!r}")
        return v


class ProfileDoc(_Model):
    kind: Literal["janus-deploy/profile"]
    format_version: Literal[1]
    source: Literal["measured", "linear", "preset"]
    provenance: str = ""
    plan_hash: str | None = None
    device: dict[str, Any]
    model: ModelDoc
    candidates: list[NonNegInt] = Field(min_length=2)
    segments: list[tuple[StrictInt, StrictInt]]
    levels: list[LevelDoc] = Field(min_length=1)
    codecs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    default_codec: str | None = None
    linear_model: dict[str, Any] | None = None


def _share_or_null(cls: Any, v: Any) -> Any:
    """An accuracy or agreement: a share in [0, 1], or null (the accuracy documents' one rule)."""
    if v is not None and not 0.0 <= v <= 1.0:
        raise ValueError(f"must be in [0, 1] or null, got {v!r}")
    return v


class AccuracyCellDoc(_Model):
    """One (level, codec, split) of an accuracy table: the level's top-1 with the codec's loss."""

    accuracy: Ms | None = None
    agreement: Ms | None = None

    _share = field_validator("accuracy", "agreement")(classmethod(_share_or_null))


class AccuracyLevelDoc(_Model):
    policy: Literal["exponential", "linear", "constant"]
    alpha: Ms = Field(ge=0)
    accuracy: Ms | None = None
    agreement: Ms | None = None
    index: int | None = Field(None, ge=0, strict=True)
    tokens: list[NonNegInt] | None = None
    #: codec -> split ("0" for frame codecs, the token splits for token codecs) -> the cell
    codecs: dict[str, dict[str, AccuracyCellDoc]] | None = None

    _share = field_validator("accuracy", "agreement")(classmethod(_share_or_null))


class MeasuredWithDoc(_Model):
    """What measured an accuracy table's levels: ``pytorch`` (the plan's model re-created) or an
    engine backend (``ort``, ``trt``) with the engines' precision and folder."""

    backend: str = Field(min_length=1)
    precision: Literal["fp32", "fp16", "int8"]
    engines: str | None = None


class AccuracyDoc(_Model):
    kind: Literal["janus-deploy/accuracy"]
    format_version: Literal[1]
    plan_hash: str | None = None
    task: str | None = None
    num_images: int | None = Field(None, ge=1, strict=True)
    model: str | None = None
    #: codecs whose loss the levels' ``codecs`` cells measured (``calibrate --codecs``)
    codecs: list[str] | None = None
    #: what ran the levels (``calibrate``: the PyTorch model; ``calibrate --engines``: those engines)
    measured_with: MeasuredWithDoc | None = None
    levels: list[AccuracyLevelDoc] = Field(min_length=1)


def _where(loc: tuple[Any, ...], root: str) -> str:
    out = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("function-after", "constrained-str", "int", "float", "tuple[int, int]", "str",
                          "tuple[int,int]") and not str(part).startswith(("function-", "json-or-python")):
            out += f".{part}"
    return out


def first_error(exc: ValidationError, root: str) -> str:
    """One line for the first problem pydantic found (and how many more there are)."""
    errs = exc.errors(include_url=False)
    e = errs[0]
    msg = e["msg"].removeprefix("Value error, ")
    where = _where(tuple(e["loc"]), root)
    if e["type"] == "missing":
        line = f"{where.rsplit('.', 1)[0]} is missing the key {str(e['loc'][-1])!r}"
    elif e["type"] == "literal_error":
        line = f"{where} is {e.get('input')!r}; {msg.lower()}"
    elif e["type"] == "value_error":  # our own validators name the value
        line = f"{where}{msg}" if msg.startswith("[") else f"{where} {msg}"
    else:
        line = f"{where}: {msg.lower()} (got {e.get('input')!r})"
    places = {_where(tuple(x["loc"][:-1] if x["loc"] and x["loc"][-1] in ("int", "float") else x["loc"]), root)
              for x in errs}
    more = len(places) - 1
    return line + (f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else "")


def validate_doc(model: type[BaseModel], data: Any, root: str, error: type[Exception]) -> BaseModel:
    """``model.model_validate(data)``, with a pydantic failure raised as one ``error`` line."""
    if not isinstance(data, dict):
        raise error(f"{root} must be a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(first_error(exc, root)) from None


__all__ = ["AccuracyDoc", "LevelDoc", "ModelDoc", "PayloadDoc", "ProfileDoc", "first_error", "validate_doc"]
