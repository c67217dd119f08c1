"""What a tenant may ask of a job, checked by the pipeline's own settings model before the job is queued.

Overrides reach the job's container as a TOML file in the tenant's directory (``jobs/<id>/dstrain.toml``,
given to ``dstrain run --config``), not as ``DSTRAIN_*`` variables: the file keeps the validated types as
they are (lists, nested dataset parameters, names that no variable can spell), it stays beside the run as
the record of what the job asked for (the run's config.json names it as the source of each value), and the
environment is left to the one secret a job may carry.
"""
import hashlib
import json
import re
from typing import Any, Dict, List, Mapping, Optional

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from typing_extensions import Annotated

from dstrain.pipeline.config import SettingClash, flatten, resolve, unflatten
from dstrain.pipeline.errors import ConfigError, Portable
from dstrain.pipeline.settings import SOURCE_FILENAME, Settings
from dstrain.pipeline.stages import STAGE_NAMES
from dstrain.service.request_limits import MAX_LIST, overrides_problem
from dstrain.service.rules import Rules

#: Settings that name places on the host or the image's tools, or that the job itself sets: a tenant's job
#: reads its own data and runs the image's tools, nothing else.  test_service_unit keeps this list equal to
#: the schema's path settings.
REFUSED = {
    "data_root": "the job's data root is its tenant's directory",
    "run": "the run is named after the job",
    "language": "give it as the job's language",
    "language_dirs": "jobs use the image's languages and installed plugins (the service would run that code)",
    "datasets": "give them as the job's datasets",
    "train.trainer_python": "jobs run the image's trainer",
    "train.source_checkpoint": "a place on the host",
    "train.source_alphabet": "a place on the host",
    "lm.kenlm_bin": "jobs run the image's KenLM",
    "lm.scorer_tool": "jobs run the image's generate_scorer_package",
    "optimize.script": "jobs run the image's lm_optimizer.py",
    "export.convert_graphdef_memmapped_format": "jobs run the image's converter",
    "network.block_private": "the host decides where jobs may connect",
    "network.allow": "the host decides where jobs may connect",
}


class JobRequest(BaseModel):
    """A job: a language, its datasets, and settings that differ from the language's."""

    model_config = ConfigDict(extra="forbid")

    language: str = Field(description="language code, e.g. fr (see `dstrain languages`)",
                          pattern=r"^[A-Za-z0-9_-]{1,32}$")
    datasets: Optional[List[Annotated[str, Field(max_length=64)]]] = Field(
        None, max_length=MAX_LIST, description="the language's datasets to use (default: all of them)")
    overrides: Dict[str, Any] = Field(
        default_factory=dict,
        description="settings, as dotted keys or nested objects, e.g. {\"train.epochs\": 5, "
                    "\"dataset.common_voice.release\": \"cv-corpus-21.0-2025-03-14\"}; the same schema as "
                    "`dstrain config`.  A dataset's `url` is downloaded by the job.")
    to: Optional[str] = Field(None, max_length=32,
                              description="stop after this stage (e.g. train); default: up to package")
    mdc_api_key: Optional[str] = Field(
        None, max_length=512,
        description="a Mozilla Data Collective key for this job's downloads: passed to its container only, never "
                    "stored nor shown", json_schema_extra={"writeOnly": True})

    @field_validator("overrides")
    @classmethod
    def _bounded(cls, overrides):
        problem = overrides_problem(overrides)
        if problem:
            raise ValueError(f"too large: {problem}")
        return overrides

    def fingerprint(self) -> str:
        """What an Idempotency-Key is checked against (the secret left out)."""
        data = self.model_dump(exclude={"mdc_api_key"})
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mdc_api_key: Optional[str] = Field(None, max_length=512,
                                       description="as for a new job: not stored, so give it again",
                                       json_schema_extra={"writeOnly": True})


class Invalid(Portable, Exception):
    """422 details, as FastAPI gives them: a list of {loc, msg, type}."""

    def __init__(self, errors: List[Dict[str, Any]]):
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


def _error(loc, msg: str, kind: str = "value_error") -> Dict[str, Any]:
    return {"loc": ["body", *loc], "msg": msg, "type": kind}


def flatten_set(data: Mapping[str, Any]) -> Dict[str, Any]:
    """Nested objects to dotted keys ({"train": {"epochs": 3}} -> {"train.epochs": 3}); null means unset."""
    return {key: value for key, value in flatten(data).items() if value is not None}


def nest(flat: Mapping[str, Any]) -> Dict[str, Any]:
    try:
        return unflatten(flat)
    except SettingClash as exc:
        raise Invalid([_error(("overrides", exc.key), "is both a value and a section")]) from None


def _check_places(flat: Mapping[str, Any]) -> List[Dict[str, Any]]:
    errors = []
    for key, value in flat.items():
        if key in REFUSED:
            errors.append(_error(("overrides", key), f"not allowed in a job: {REFUSED[key]}", "not_allowed"))
        elif key.endswith(".url") and not re.match(r"^https?://[^\s/]+", str(value)):
            errors.append(_error(("overrides", key), "must be an http:// or https:// URL", "url_scheme"))
        elif key.startswith("dataset.") and key.endswith(".archive") and not re.match(SOURCE_FILENAME, str(value)):
            errors.append(_error(("overrides", key), "must be a file name in sources/, without a directory",
                                 "file_name"))
    return errors


def validate(request: JobRequest, rules: Optional[Rules] = None) -> Dict[str, Any]:
    """The request's overrides as flat dotted keys, checked exactly as `dstrain run` would check them, then
    against the host's ``rules``: its ceilings, and the addresses a job's downloads may name."""
    flat = flatten_set(request.overrides)
    errors = _check_places(flat)
    if request.to is not None and request.to not in STAGE_NAMES:
        errors.append(_error(("to",), "no such stage; stages are: " + ", ".join(STAGE_NAMES), "stage"))
    if errors:
        raise Invalid(errors)
    # The schema first, for errors that name their field ...
    try:
        Settings(**nest(flat))
    except ValidationError as exc:
        raise Invalid([_error(("overrides", ".".join(str(p) for p in err["loc"])), err["msg"], err["type"])
                       for err in exc.errors()]) from None
    # ... then everything the pipeline checks besides: the language, its datasets and their parameters.
    flags = dict(flat, language=request.language, datasets=",".join(request.datasets or ()) or None)
    try:
        config = resolve(None, environ={}, flags=flags)
    except ConfigError as exc:
        where = ("language",) if str(exc).startswith("unknown language") else ("overrides",)
        raise Invalid([_error(where, str(exc), "settings")]) from None
    if rules is not None:
        errors = [_error(("overrides", key), why, "ceiling") for key, why in rules.over_ceilings(flat, config)]
        errors += [_error(("overrides", key), why, "egress") for key, why in rules.refused_urls(flat)]
        if errors:
            raise Invalid(errors)
    return flat


def settings_toml(flat: Mapping[str, Any]) -> str:
    return "# The settings this job asked for (dstrain serve); `dstrain run --config` reads them.\n" + \
        tomli_w.dumps(nest(flat))
