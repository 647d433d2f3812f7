"""What each JSON file of a run folder must hold: one pydantic model per file.

    run.json     RunFile     the run: its key, reference, settings and status
    log.json     LogFile     the training log, as equally long columns
    meta.json    MetaFile    one checkpoint: its step, its files' sha256, its evaluation
    config.json  ConfigFile  the architecture, within `interp.core.model.LIMITS`

The store (`interp.runs.store`) validates every one of these files when it reads it, so
JSON that parses but has the wrong shape (a list, a string where a number belongs, a
missing field, a negative seed, a size of 10⁹) becomes one `CheckpointError` line naming
the file and saying what to do, never a traceback further on. Validation is strict: no
string is read as a number and no float as an integer. Unknown extra fields are allowed
in run.json and meta.json (written by newer code), not in config.json, which must
describe the model completely. A valid file is kept as read (`raw`): callers see the
dicts they always saw.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from interp.core.losses import LOSSES
from interp.core.model import (
    ACT_FN,
    LIMITS,
    NORMALIZATION,
    POSITIONAL,
    ModelSpec,
)
from interp.core.numberline import VOCAB
from interp.errors import CheckpointError
from interp.runs.names import PolicyKey, parse_policy, round_beta

NonNegInt = Annotated[int, Field(ge=0)]
PosInt = Annotated[int, Field(ge=1)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
PRESET_RE = r"^[a-z][a-z0-9_]*$"
F = TypeVar("F", bound="_File")


def _finite(x: float | None) -> bool:
    return x is None or math.isfinite(x)


class _File(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def raw(self) -> dict[str, Any]:
        """The file's content as read (validated)."""
        return self._raw

    @classmethod
    def parse(cls: type[F], obj: Any, path: Any, advice: str) -> F:
        """`obj` (parsed JSON read from `path`) validated; CheckpointError naming the file,
        the first problem and `advice` if it is not valid."""
        try:
            out = cls.model_validate(obj)
        except ValidationError as e:
            raise CheckpointError(f"{path} is not valid: {describe(e)}; {advice}") from None
        out._raw = obj
        return out


def describe(e: ValidationError) -> str:
    """The first problem of a validation error, on one line."""
    errs = e.errors()
    first = errs[0]
    parts = [str(x) for x in first["loc"]]
    loc = ".".join(parts[1:] if parts[:1] == ["columns"] else parts)  # LogFile wraps its object
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] in ("model_type", "dict_type") and not loc:
        msg = f"expected a JSON object, not {type(first['input']).__name__}"
    given = first.get("input")
    if loc and isinstance(given, str | int | float | bool) and "Value error" not in first["msg"]:
        msg += f", not {given!r}"[:60]
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    return (f"{loc}: {msg}" if loc else msg) + more


class ModelFields(_File):
    """The architecture knobs (`ModelSpec`), bounded by `LIMITS` and `MAX_PARAMS`."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    n_layers: Annotated[int, Field(ge=1, le=LIMITS["n_layers"])]
    d_model: Annotated[int, Field(ge=1, le=LIMITS["d_model"])]
    n_heads: Annotated[int, Field(ge=1, le=LIMITS["n_heads"])]
    d_mlp: Annotated[int, Field(ge=1, le=LIMITS["d_mlp"])]
    n_ctx: Annotated[int, Field(ge=1, le=LIMITS["n_ctx"])]

    @model_validator(mode="after")
    def _spec(self) -> Any:
        self.spec  # noqa: B018 (ModelSpec's own checks: divisibility, parameter count)
        return self

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(self.n_layers, self.d_model, self.n_heads, self.d_mlp, self.n_ctx)


class ConfigFile(ModelFields):
    """config.json: the HookedTransformerConfig fields that rebuild the model
    (`interp.core.model.CONFIG_FIELDS`); only what `ModelSpec.config()` can produce."""

    d_head: PosInt
    d_vocab: int
    act_fn: Literal[ACT_FN]  # type: ignore[valid-type]
    normalization_type: Literal[NORMALIZATION]  # type: ignore[valid-type]
    positional_embedding_type: Literal[POSITIONAL]  # type: ignore[valid-type]
    attn_only: Literal[False]
    default_prepend_bos: bool

    @model_validator(mode="after")
    def _derived(self) -> Any:
        if self.d_head * self.n_heads != self.d_model:
            raise ValueError(
                f"d_head {self.d_head} × n_heads {self.n_heads} is not d_model {self.d_model}"
            )
        if self.d_vocab != len(VOCAB):
            raise ValueError(f"d_vocab is {self.d_vocab}, not the task's {len(VOCAB)} tokens")
        return self


class HyperFields(_File):
    """One training stage's settings (`interp.runs.config.Hyper`)."""

    epochs: PosInt
    optimizer: Literal["adam", "adamw", "rmsprop"]
    lr: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    batch_size: PosInt
    grad_clip: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    weight_decay: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0


class _Keyed(_File):
    """The fields that say which run a file belongs to."""

    policy: str
    preset: Annotated[str, Field(pattern=PRESET_RE)]
    loss: str
    beta: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None
    seed: NonNegInt
    reference: str | None

    @model_validator(mode="after")
    def _consistent(self) -> Any:
        if self.loss != "sft" and self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}")
        key = self.key
        if parse_policy(key.name) != key:
            raise ValueError(f"{key.name!r} is not a policy name this suite can read back")
        if self.policy != key.name:
            raise ValueError(f"policy {self.policy!r} is not {key.name!r} (preset, loss, β, seed)")
        want = None if key.is_ref else key.reference.name
        if self.reference != want:
            raise ValueError(f"reference {self.reference!r} is not {want!r}")
        return self

    @property
    def key(self) -> PolicyKey:
        return PolicyKey(self.preset, self.loss, self.beta, self.seed)


class RunFile(_Keyed):
    """run.json."""

    hyper: HyperFields
    model: ModelFields
    n_train_pairs: PosInt
    n_test_pairs: NonNegInt
    total_steps: NonNegInt
    steps_per_epoch: PosInt
    checkpoint_steps: list[NonNegInt]
    status: Literal["running", "complete"]
    reference_sha256: Sha256 | None = None
    wall_time_s: float | None = None
    resumed_from: list[NonNegInt] = []

    @property
    def complete(self) -> bool:
        return self.status == "complete"


class MetaFile(_File):
    """meta.json. Only what every checkpoint has is required; which run it belongs to
    (policy, preset, loss, β, seed, reference) is checked by the store against the run it
    sits in. `optimizer_sha256` is absent in checkpoints written before it was recorded."""

    step: NonNegInt
    sha256: Sha256
    optimizer_sha256: Sha256 | None = None
    vocab: list[str] | None = None
    git_commit: str | None = None
    policy: str | None = None
    preset: str | None = None
    loss: str | None = None
    beta: float | None = None
    seed: int | None = None
    reference: str | None = None
    reference_sha256: Sha256 | None = None
    epoch: Annotated[float, Field(ge=0)] | None = None
    eval: dict[str, float | None] = {}
    eval_settings: dict[str, Any] | None = None

    def belongs_to(self, key: PolicyKey) -> bool:
        beta = None if self.beta is None or not _finite(self.beta) else round_beta(self.beta)
        ref = None if key.is_ref else key.reference.name
        return (self.policy, self.preset, self.loss, beta, self.seed, self.reference) == (
            key.name,
            key.preset,
            key.loss,
            key.beta,
            key.seed,
            ref,
        )


class LogFile(_File):
    """log.json: columns of equal length, `step` strictly increasing from 1."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    columns: dict[str, list[float]]

    @model_validator(mode="after")
    def _shape(self) -> Any:
        if not self.columns:
            return self
        steps = self.columns.get("step")
        if steps is None:
            raise ValueError("no step column")
        if any(len(v) != len(steps) for v in self.columns.values()):
            raise ValueError("columns of different lengths")
        if any(s != int(s) for s in steps) or any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError("steps are not increasing integers")
        return self

    @classmethod
    def parse(cls, obj: Any, path: Any, advice: str) -> LogFile:  # type: ignore[override]
        if not isinstance(obj, dict):
            raise CheckpointError(
                f"{path} is not valid: expected a JSON object, not {type(obj).__name__}; {advice}"
            )
        out = super().parse({"columns": obj}, path, advice)
        out._raw = obj
        return out

    def steps(self) -> list[int]:
        return [int(s) for s in self.columns.get("step", [])]
