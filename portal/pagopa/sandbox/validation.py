"""Contract checks: every API request the sandbox receives is validated against the official OpenAPI file.

The files in ``portal/pagopa/specs`` are used verbatim except for two load-time adjustments, both needed
only because the validator is Python and the files were written for Java tooling:

* ``servers`` is replaced by ``/``: we validate the path *below* our mount prefix (the official servers
  carry the same prefix on pagoPA's hosts, e.g. ``/gpd/debt-positions-service/v1``);
* the Java regex escape ``\\h`` (horizontal whitespace, in GPD's ``iupd`` pattern) becomes `` \\t``, which
  Python's ``re`` understands;
* string defaults on boolean properties (``payStandIn: default 'true'``, ``switchToExpired: default 'false'``)
  become booleans: openapi-core fills in defaults while unmarshalling and would otherwise reject every body
  that omits ``payStandIn`` (GPD itself, a Java server, reads the default as a boolean).

The spec self-validation is switched off (``spec_validator_cls=None``): the files carry string defaults on
boolean properties (``payStandIn: default 'true'``), which a strict spec validator rejects.

A JSON request body is checked by a validator compiled once per operation (:class:`_Compiled`), not
rebuilt and walked through the spec's references on every call: openapi-core spends ~8 ms of CPU on a GPD
position that way, most of it unmarshalling a body nobody reads. The parameters likewise: what openapi-core reads
from the spec for each parameter on every call (its name, place, style, default, and the deserializer, validator
and unmarshaller it builds) is read once per operation (:class:`_Parameter`). A body or a parameter the compiled
path refuses goes through openapi-core's own path, so every refusal reads as before
(``tests/test_sandbox_validation.py`` compares both paths).
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from contextlib import suppress
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from openapi_core import Config, OpenAPI
from openapi_core.datatypes import Parameters, RequestParameters
from openapi_core.schema.parameters import get_style_and_explode
from openapi_core.unmarshalling.request.unmarshallers import V30RequestUnmarshaller, V31RequestUnmarshaller
from werkzeug.datastructures import Headers, ImmutableMultiDict

from portal.pagopa import SPECS_DIR

log = logging.getLogger(__name__)

#: mount prefix → (spec file, API name used in error titles)
APIS: dict[str, tuple[str, str]] = {
    "/gpd/debt-positions-service/v1": ("gpd/gpd.json", "gpd"),
    "/gpd/debt-positions-service/v2": ("gpd/pagopa-debt-position/openapi_external_v2.json", "gpd"),
    "/gpd/payments-receipts-service/v1": ("gpd/gpd_payments.json", "receipts"),
    "/checkout/ec/v1": ("checkout/checkout_v1.json", "checkout"),
    "/checkout/ec/v2": ("checkout/checkout_v2.json", "checkout"),
    "/fdr-org/service/v1": ("fdr/fdr_organization.json", "fdr"),
}


def match_api(path: str) -> tuple[str, str, str] | None:
    """``(prefix, spec file, api name)`` for a request path under one of the mounted APIs."""
    for prefix, (spec, name) in APIS.items():
        if path == prefix or path.startswith(prefix + "/"):
            return prefix, spec, name
    return None


def _javaless(node: Any) -> Any:
    if isinstance(node, dict):
        out = {key: (value.replace("\\h", " \\t") if key == "pattern" and isinstance(value, str) else _javaless(value))
               for key, value in node.items()}
        if out.get("type") == "boolean" and isinstance(out.get("default"), str):
            out["default"] = out["default"].strip().lower() == "true"
        return out
    if isinstance(node, list):
        return [_javaless(item) for item in node]
    return node


def load_spec(spec_file: str, *, compiled: bool = True) -> OpenAPI:
    """The spec as the sandbox validates with it (one per file and process); ``compiled=False``: with
    openapi-core's own request unmarshaller instead of :class:`_Compiled` (the tests compare the two)."""
    return _load_spec(spec_file, compiled)


@cache
def _load_spec(spec_file: str, compiled: bool) -> OpenAPI:
    with open(SPECS_DIR / spec_file, encoding="utf-8") as handle:
        data = json.load(handle)
    data = _javaless(data)
    data["servers"] = [{"url": "/"}]
    version31 = str(data.get("openapi", "")).startswith("3.1")
    if compiled:
        unmarshaller = _V31Compiled if version31 else _V30Compiled
    else:
        unmarshaller = V31RequestUnmarshaller if version31 else V30RequestUnmarshaller
    # "uri" has no built-in formatter in openapi-core (it fails the Location header of the carts); accept any
    # string without blanks: Checkout's own examples use scheme-less return URLs.
    return OpenAPI.from_dict(data, config=Config(
        spec_validator_cls=None,
        extra_format_validators={"uri": _looks_like_uri},
        extra_format_unmarshallers={"uri": str},
        request_unmarshaller_cls=unmarshaller,
    ))


#: The media type whose bodies :class:`_Compiled` checks itself (openapi-core's own ``json.loads``).
_JSON = "application/json"


class _Refused(Exception):
    """The compiled path met something it leaves to openapi-core (which then says what is wrong)."""


@dataclass(frozen=True)
class _Parameter:
    """What openapi-core reads from the spec for one parameter of an operation on every call, read once."""

    name: str
    location: str
    required: bool
    deprecated: bool
    allow_empty: bool | None
    #: ``(value,)`` when the schema has a default, else ``()``
    default: tuple
    deserializer: Any
    validator: Any
    unmarshaller: Any


class _Compiled:
    """openapi-core's request unmarshaller, with what it builds per call for an operation built once and kept.

    *Body*: a JSON body is validated by the very validator openapi-core builds for it on every call (same factory,
    same format checkers, same options). It is validated, not unmarshalled: the sandbox's handlers read the
    request's JSON themselves. Anything else — no body, another media type, a body that is not JSON or that the
    validator refuses — goes through openapi-core's own ``_get_body``, which says what is wrong as it always did.

    *Parameters*: the operation's and its path's parameters, deduplicated as openapi-core does, each with its
    style deserializer, schema validator and unmarshaller built by openapi-core's factories with the same
    options; each call then runs openapi-core's steps (deserialize, default, empty query value, validate,
    unmarshal) on them. A missing required parameter, a value refused at any step, or a parameter described by
    ``content`` sends the whole call through openapi-core's own ``_get_parameters``.

    One unmarshaller serves every thread of a spec; what is kept is immutable, the caches plain dicts.
    """

    def _get_parameters(self, parameters, operation, path):
        plan = self._parameter_plan(operation, path)
        if plan is not None:
            with suppress(Exception):  # openapi-core's own path below says what is wrong
                return self._compiled_parameters(parameters, plan)
        return super()._get_parameters(parameters, operation, path)

    @staticmethod
    def _compiled_parameters(parameters, plan: tuple[_Parameter, ...]) -> Parameters:
        validated = Parameters()
        for param in plan:
            location = parameters[param.location]
            if param.deprecated and param.name in location:
                warnings.warn(f"{param.name} parameter is deprecated", DeprecationWarning, stacklevel=2)
            try:
                value = param.deserializer.deserialize(location)
            except KeyError:
                if not param.default:
                    if param.required:
                        raise _Refused(param.name) from None
                    continue
                value = param.default[0]
            else:
                if param.location == "query" and value == "" and not param.allow_empty:
                    raise _Refused(param.name)
            param.validator.validate(value)
            getattr(validated, param.location)[param.name] = param.unmarshaller.unmarshal(value)
        return validated

    def _parameter_plan(self, operation, path) -> tuple[_Parameter, ...] | None:
        cache = self.__dict__.setdefault("_parameter_plans", {})
        key = (operation.parts, path.parts)
        try:
            return cache[key]
        except KeyError:
            pass
        plan: list[_Parameter] | None = []
        seen = set()
        for params in (operation.get("parameters"), path.get("parameters")):
            for param in params or ():
                name, location = (param / "name").read_str(), (param / "in").read_str()
                if (name, location) in seen:
                    continue
                seen.add((name, location))
                if "content" in param:
                    plan = None
                    break
                plan.append(self._compile_parameter(param, name, location))
            if plan is None:
                break
        cache[key] = result = tuple(plan) if plan is not None else None
        return result

    def _compile_parameter(self, param, name: str, location: str) -> _Parameter:
        schema = param / "schema"
        style, explode = get_style_and_explode(param)
        options = dict(format_validators=self.format_validators,
                       extra_format_validators=self.extra_format_validators,
                       forbid_unspecified_additional_properties=self.forbid_unspecified_additional_properties,
                       enforce_properties_required=self.enforce_properties_required)
        return _Parameter(
            name=name, location=location,
            required=(param / "required").read_bool(default=False),
            deprecated=(param / "deprecated").read_bool(default=False),
            allow_empty=(param / "allowEmptyValue").read_bool(default=None),
            default=((schema / "default").read_value(),) if "default" in schema else (),
            deserializer=self.style_deserializers_factory.create(self.spec, schema, style, explode, name=name),
            validator=self.schema_validators_factory.create(self.spec, schema, **options),
            unmarshaller=self.schema_unmarshallers_factory.create(
                self.spec, schema, **options, format_unmarshallers=self.format_unmarshallers,
                extra_format_unmarshallers=self.extra_format_unmarshallers),
        )

    def _get_body(self, body, mimetype, operation):
        if body:
            validator = self._body_validator(operation, mimetype)
            if validator is not None:
                try:
                    value = json.loads(body)
                except ValueError:
                    value = validator = None
                if validator is not None and validator.is_valid(value):
                    return value
        return super()._get_body(body, mimetype, operation)

    def _body_validator(self, operation, mimetype):
        cache = self.__dict__.setdefault("_compiled_bodies", {})
        key = (operation.parts, mimetype)
        try:
            return cache[key]
        except KeyError:
            pass
        validator = None
        if "requestBody" in operation:
            content = operation / "requestBody" / "content"
            try:
                found, _parameters, media_type = self._find_media_type(content, mimetype)
            except Exception:  # noqa: BLE001 - openapi-core's own path says why (MediaTypeNotFound)
                found = None
            if found == _JSON and "schema" in media_type:
                validator = self.schema_validators_factory.create(
                    self.spec, media_type / "schema",
                    format_validators=self.format_validators,
                    extra_format_validators=self.extra_format_validators,
                    forbid_unspecified_additional_properties=self.forbid_unspecified_additional_properties,
                    enforce_properties_required=self.enforce_properties_required,
                ).validator
        cache[key] = validator
        return validator


class _V30Compiled(_Compiled, V30RequestUnmarshaller):
    pass


class _V31Compiled(_Compiled, V31RequestUnmarshaller):
    pass


def _looks_like_uri(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and not any(char.isspace() for char in value)


@dataclass
class _Request:
    """The openapi-core request protocol, built from a Flask request with the mount prefix stripped."""

    path: str
    method: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters = field(default_factory=RequestParameters)
    host_url: str = "http://sandbox"


@dataclass
class _Response:
    status_code: int
    data: bytes
    content_type: str
    headers: Headers


def _request(flask_request, prefix: str) -> _Request:
    path = flask_request.path[len(prefix):] or "/"
    body = flask_request.get_data(cache=True) if flask_request.method not in ("GET", "HEAD") else None
    return _Request(
        path=path,
        method=flask_request.method.lower(),
        body=body if body else None,
        content_type=(flask_request.content_type or "").lower(),
        parameters=RequestParameters(
            query=ImmutableMultiDict(list(flask_request.args.items(multi=True))),
            header=Headers(list(flask_request.headers.items())),
            cookie=ImmutableMultiDict(list(flask_request.cookies.items(multi=True))),
        ),
    )


def describe(error: Exception) -> list[str]:
    """Readable lines for an openapi-core error: the schema errors with their JSON paths when there are some."""
    lines: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        schema_errors = getattr(current, "schema_errors", None)
        if schema_errors:
            for item in schema_errors:
                where = getattr(item, "json_path", "$")
                lines.append(f"{where}: {item.message}")
            return lines
        current = current.__cause__ or current.__context__
    try:
        return [str(error) or type(error).__name__]
    except Exception:  # noqa: BLE001 - openapi-core's own __str__ can fail (it decodes the body as UTF-8)
        return [type(error).__name__]


@dataclass
class RequestCheck:
    """The outcome of :func:`validate_request`."""

    errors: list[str]
    #: the method and path are an operation of the spec
    found: bool
    #: the unmarshalled query parameters
    query: dict
    #: every error is about a path parameter (a value no resource can have)
    path_only: bool = False
    #: the response codes the spec documents for the operation
    documented: frozenset[str] = frozenset()


def json_parse_error(flask_request) -> str | None:
    """Why a JSON request body cannot be read (GPD's ``HttpMessageNotReadableException`` case), or None.

    openapi-core only reports such a body as undeserializable and, when the bytes are not UTF-8, fails while
    describing it; we read it first so that any such body is a plain 400.
    """
    mimetype = (flask_request.mimetype or "").lower()
    if flask_request.method in ("GET", "HEAD") or not (mimetype == "application/json" or mimetype.endswith("+json")):
        return None
    body = flask_request.get_data(cache=True)
    if not body:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"JSON parse error: the request body is not UTF-8 text ({exc.reason} at byte {exc.start})"
    try:
        json.loads(text)
    except ValueError as exc:
        return f"JSON parse error: {exc}"
    return None


def validate_request(flask_request, prefix: str, spec_file: str) -> RequestCheck:
    """Validate a request against the spec of the API mounted at ``prefix``."""
    from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
    from openapi_core.validation.request.exceptions import ParameterValidationError

    result = load_spec(spec_file).unmarshal_request(_request(flask_request, prefix))
    found = not any(isinstance(err, (PathNotFound, OperationNotFound)) for err in result.errors)
    query = dict(result.parameters.query) if result.parameters else {}
    if not found:
        return RequestCheck([], False, query)
    documented = documented_responses(spec_file, flask_request.method, flask_request.path[len(prefix):] or "/")
    parse_error = json_parse_error(flask_request)
    if parse_error:
        return RequestCheck([parse_error], True, query, documented=documented)
    errors: list[str] = []
    for err in result.errors:
        errors.extend(describe(err))
    path_only = bool(result.errors) and all(
        isinstance(err, ParameterValidationError) and err.location == "path" for err in result.errors)
    return RequestCheck(errors, True, query, path_only=path_only, documented=documented)


@cache
def _operations(spec_file: str) -> list[tuple[re.Pattern, str, frozenset[str]]]:
    """``(path regex, method, documented response codes)`` of every operation, literal paths first."""
    with open(SPECS_DIR / spec_file, encoding="utf-8") as handle:
        paths = json.load(handle)["paths"]
    operations = []
    for template, item in sorted(paths.items(), key=lambda pair: pair[0].count("{")):
        regex = re.compile("".join("[^/]+" if part.startswith("{") else re.escape(part)
                                   for part in re.split(r"(\{[^}]+\})", template)) + "$")
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                operations.append((regex, method.upper(), frozenset(operation["responses"])))
    return operations


def documented_responses(spec_file: str, method: str, path: str) -> frozenset[str]:
    """The response codes ``spec_file`` documents for ``method path`` (a path below the mount prefix)."""
    for regex, op_method, codes in _operations(spec_file):
        if op_method == method.upper() and regex.match(path):
            return codes
    return frozenset()


def validate_response(flask_request, prefix: str, spec_file: str, response) -> list[str]:
    """Check a response the sandbox is about to send against the same spec (tests switch this on)."""
    api = load_spec(spec_file)
    openapi_response = _Response(
        status_code=response.status_code,
        data=response.get_data(),
        content_type=(response.content_type or "").lower(),
        headers=Headers(list(response.headers.items())),
    )
    result = api.unmarshal_response(_request(flask_request, prefix), openapi_response)
    errors: list[str] = []
    for err in result.errors:
        errors.extend(describe(err))
    return errors
