"""The wording of module.yaml problems: where each is (document, kind, id, line, field path),
pydantic's errors translated into messages that name the fix, and the final report."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Final, get_args

from pydantic import BaseModel

from kstatefun.config.module.parsers import describe
from kstatefun.config.module.schema import Schema
from kstatefun.config.module.source import Loc
from kstatefun.config.module.specs import (
    DELIVERY_SEMANTICS,
    KIND_EGRESS,
    KIND_EMBEDDED,
    KIND_HTTP_V1,
    KIND_HTTP_V2,
    KIND_INGRESS,
    STARTUP_POSITIONS,
)


@dataclass(frozen=True, slots=True)
class Problem:
    message: str
    doc: int | None = None
    kind: str | None = None
    id: str | None = None
    path: Loc = ()
    line: int | None = None

    def render(self, source: str | None) -> str:
        parts = [source] if source else []
        if self.doc is not None:
            label = f"document {self.doc}"
            if self.kind:
                label += f" ({self.kind}" + (f" '{self.id}'" if self.id else "") + ")"
            parts.append(label)
        if self.line is not None:
            parts.append(f"line {self.line}")
        field = f"{_format_path(self.path)}: " if self.path else ""
        return f"{', '.join(parts)}: {field}{self.message}"


def _format_path(path: Loc) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_MISSING_EXAMPLES: Final[dict[tuple[str, str], str]] = {
    (KIND_INGRESS, "id"): "id: example/names",
    (KIND_INGRESS, "topics"): (
        "topics: [{topic: names, valueType: example/Person, targets: [example/greeter]}]"
    ),
    ("topics", "topic"): "topic: names",
    ("topics", "valueType"): "valueType: example/Person",
    ("topics", "targets"): "targets: [example/greeter]",
    ("startupPosition", "type"): f"type: earliest (one of {', '.join(STARTUP_POSITIONS)})",
    (KIND_EGRESS, "id"): "id: example/greetings",
    ("deliverySemantic", "type"): f"type: exactly-once (one of {', '.join(DELIVERY_SEMANTICS)})",
    (KIND_HTTP_V2, "functions"): "functions: example/*",
    (KIND_HTTP_V1, "functions"): "functions: example/*",
    (KIND_HTTP_V2, "urlPathTemplate"): "urlPathTemplate: http://functions:8000/{function.name}",
    (KIND_HTTP_V1, "urlPathTemplate"): "urlPathTemplate: http://functions:8000/{function.name}",
    (KIND_EMBEDDED, "functions"): "functions: [examples.greeter:functions]",
}

_MISPLACED_HINTS: Final[dict[tuple[str, str], str]] = {
    (KIND_HTTP_V2, "timeouts"): (
        "in io.statefun.endpoints.v2/http, timeouts go under 'transport', "
        "e.g. 'transport: {timeouts: {call: 1 min}}'"
    ),
    (KIND_HTTP_V1, "transport"): (
        "'transport' needs kind io.statefun.endpoints.v2/http; v1 takes 'timeouts' directly"
    ),
}


def _field_key(name: str, info: Any) -> str:
    return info.alias or name


def _model_at(model: type[BaseModel], path: Loc) -> type[BaseModel] | None:
    """The schema model that validates the mapping found at ``path`` below ``model``."""
    current: type[BaseModel] = model
    for part in path:
        if isinstance(part, int):
            continue
        info = next((f for n, f in current.model_fields.items() if _field_key(n, f) == part), None)
        found = _find_model(info.annotation) if info is not None else None
        if found is None:
            return None
        current = found
    return current


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _find_model(arg)
        if found is not None:
            return found
    return None


def did_you_mean(word: str, known: list[str]) -> str:
    folded = {k.lower().replace("_", "").replace("-", ""): k for k in known}
    exact = folded.get(word.lower().replace("_", "").replace("-", ""))
    close = [exact] if exact else difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'? " if close else ""


def translate(kind: str, schema: type[Schema], error: Any) -> tuple[Loc, str]:
    loc: Loc = tuple(error["loc"])
    kind_of, value = error["type"], error.get("input")
    if kind_of == "kstatefun":
        return loc, error["ctx"]["message"]
    if kind_of == "missing":
        parent = next((p for p in reversed(loc[:-1]) if isinstance(p, str)), kind)
        example = _MISSING_EXAMPLES.get((parent, str(loc[-1])))
        fix = f"add it, e.g. '{example}'" if example else "add it"
        return loc, f"required field '{loc[-1]}' is missing; {fix}"
    if kind_of == "extra_forbidden":
        name = str(loc[-1])
        hint = _MISPLACED_HINTS.get((kind, name)) if len(loc) == 1 else None
        if hint:
            return loc, f"unknown field '{name}'; {hint}"
        model = _model_at(schema, loc[:-1])
        known = [_field_key(n, f) for n, f in model.model_fields.items()] if model else []
        listing = f"known fields: {', '.join(known)}" if known else "remove it"
        return loc, f"unknown field '{name}'; {did_you_mean(name, known)}{listing}"
    if kind_of in ("model_type", "model_attributes_type", "dict_type"):
        return loc, f"expected a mapping of fields, got {describe(value)}"
    if kind_of == "list_type":
        return loc, f"expected a list ('- item' lines or [a, b]), got {describe(value)}"
    if kind_of in ("string_type", "str_type"):
        if loc == ("functions",) and kind in (KIND_HTTP_V1, KIND_HTTP_V2):
            return loc, (
                f"expected one pattern, got {describe(value)}; an endpoint serves one "
                "'namespace/name' or 'namespace/*': write one endpoint document per pattern"
            )
        return loc, f"expected text, got {describe(value)}"
    return loc, f"{error['msg']} (got {describe(value)})"


def render(source: str, problems: list[Problem]) -> str:
    problems = sorted(problems, key=lambda p: (p.doc or 0, p.line or 0))
    if len(problems) == 1:
        return problems[0].render(source)
    lines = [f"{source} has {len(problems)} problems:"]
    lines += [f"  - {p.render(None)}" for p in problems]
    return "\n".join(lines)
