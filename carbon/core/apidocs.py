"""A readable API page at /api/docs, rendered on the server from the OpenAPI document
(no JavaScript or CDN, so it works offline and behind strict networks)."""
from __future__ import annotations

import json

from flask import Blueprint, render_template_string

from carbon.core import extensions as ext

bp = Blueprint("apidocs", __name__)

PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{{ spec.info.title }} API</title>
<link rel="icon" href="data:,">
<style>
body{font-family:system-ui,"PingFang SC","Microsoft YaHei",sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#1d2a22}
h1{color:#1f7a4d} .op{border:1px solid #d7e3dc;border-radius:6px;margin:1em 0;padding:.6em 1em}
.m{display:inline-block;min-width:4.5em;font-weight:bold;color:#fff;border-radius:4px;padding:0 .4em;text-align:center}
.get{background:#2f6fb5}.post{background:#1f7a4d}.patch{background:#b5852f}.delete{background:#b53f2f}.put{background:#7a4db5}
code,pre{background:#f3f7f5;border-radius:4px;padding:0 .3em} pre{padding:.6em;overflow:auto;font-size:12px}
</style></head><body>
<h1>{{ spec.info.title }} <small>v{{ spec.info.version }}</small></h1>
<p>点点碳中和后端接口 / Diandian API. Machine-readable: <a href="/api/openapi.json">/api/openapi.json</a>.
Errors always use <code>{"error": {"code", "message", "details", "request_id"}}</code>.</p>
{% for path, ops in spec.paths.items() %}{% for method, op in ops.items() if method in methods %}
<div class="op"><span class="m {{ method }}">{{ method|upper }}</span> <code>{{ path }}</code>
 — {{ op.summary or '' }}{% if op.tags %} <small>[{{ op.tags|join(', ') }}]</small>{% endif %}
{% if op.description %}<p>{{ op.description }}</p>{% endif %}
{% if op.requestBody %}<details><summary>request body</summary><pre>{{ dump(op.requestBody) }}</pre></details>{% endif %}
<details><summary>responses</summary><pre>{{ dump(op.responses) }}</pre></details></div>
{% endfor %}{% endfor %}
<h2>Schemas</h2>{% for name, schema in spec.components.schemas.items() %}
<details><summary><code>{{ name }}</code></summary><pre>{{ dump(schema) }}</pre></details>{% endfor %}
</body></html>"""


@bp.get("/api/docs")
def docs():
    spec = ext.api().spec.to_dict()
    spec.setdefault("components", {}).setdefault("schemas", {})
    return render_template_string(PAGE, spec=spec, methods={"get", "post", "patch", "put", "delete"},
                                  dump=lambda value: json.dumps(value, ensure_ascii=False, indent=2))
