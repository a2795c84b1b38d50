"""ComfyUI workflow templates (API format) and how a job's values go into them.

Two ways, as the apps that drive ComfyUI do: declared placeholders (SillyTavern's style: a JSON
string that is exactly "%prompt%" becomes the value with its JSON type; inside a longer string
it is replaced as text), or node mappings (Open WebUI's style) declared in the template under
"_image_svc": {"nodes": {"prompt": ["6.text"], "seed": ["3.seed"], ...}}. The key "_image_svc"
is removed before the graph is sent. Placeholders and mapping names: prompt, negative_prompt,
seed, steps, scale, sampler, model, width, height, batch_size.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

BUILT_IN = "txt2img"
_META = "_image_svc"


class WorkflowError(ValueError):
    """A template that cannot be used; the message names what is wrong with it."""


def load_templates(extra_dir: Path | None) -> dict[str, dict[str, Any]]:
    """The built-in txt2img template plus every *.json in the operator's directory (by stem)."""
    templates = {
        BUILT_IN: orjson.loads(resources.files(__package__).joinpath("txt2img.json").read_bytes())
    }
    if extra_dir is not None:
        for path in sorted(extra_dir.glob("*.json")):
            try:
                graph = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError as err:
                raise WorkflowError(f"workflow {path.name} is not JSON: {err}") from None
            if not isinstance(graph, dict):
                raise WorkflowError(f"workflow {path.name} is not an API-format graph (an object)")
            templates[path.stem] = graph
    return templates


def fill(template: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The graph to send: placeholders substituted, node mappings applied, metadata removed."""
    graph = {k: copy.deepcopy(v) for k, v in template.items() if k != _META}
    filled: dict[str, Any] = _substitute(graph, values)
    meta = template.get(_META) or {}
    for name, targets in (meta.get("nodes") or {}).items():
        if name not in values:
            raise WorkflowError(f"the workflow maps {name!r}, which is not a job value")
        for target in targets:
            node_id, _, field = str(target).partition(".")
            node = filled.get(node_id)
            if not isinstance(node, dict) or not field:
                raise WorkflowError(f"the workflow maps {name!r} to a missing node {target!r}")
            node.setdefault("inputs", {})[field] = values[name]
    return filled


def _substitute(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values) for v in value]
    if isinstance(value, str) and "%" in value:
        if value.startswith("%") and value.endswith("%") and value[1:-1] in values:
            return values[value[1:-1]]
        for name, replacement in values.items():
            value = value.replace(f"%{name}%", str(replacement))
    return value


def output_nodes(graph: Mapping[str, Any]) -> list[str]:
    return [
        node_id
        for node_id, node in graph.items()
        if isinstance(node, dict) and node.get("class_type") in ("SaveImage", "PreviewImage")
    ]
