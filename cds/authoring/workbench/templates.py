"""The workbench's server-rendered pages (Jinja, autoescaped; no inline script or style: the CSP
allows only /static/workbench.js and /static/workbench.css, so every page carries its data in
``data-`` attributes and every form its CSRF token)."""

from __future__ import annotations

from typing import Any

from jinja2 import DictLoader, Environment

BASE = """<!doctype html><html lang="en"><head>
<meta charset="utf-8"><meta name="csrf-token" content="{{ csrf }}">
<title>{{ title }} - rule workbench</title>
<link rel="stylesheet" href="/static/workbench.css">
<script src="/static/workbench.js" defer></script></head><body><header><b>HER2 CDS rule workbench</b>
<a href="/">Rules</a><a href="/run">Run a patient</a><a href="/lint">Lint</a>
</header>
<main>{% block body %}{% endblock %}</main></body></html>"""

CSRF = """<input type="hidden" name="csrf" value="{{ csrf }}">"""

INDEX = """{% extends "base" %}{% block body %}<h1>Rules</h1>
{% for rs in lib.rulesets %}<div class="box"><h2>{{ rs.name }} <small>{{ rs.version }}
<span class="status-{{ rs.spec.status }}">{{ rs.spec.status }}</span></small></h2>
<p>{{ rs.spec.description }} <small>({{ rs.source.name }}{% if rs.spec.approved_by %}; approved by
{{ rs.spec.approved_by }} on {{ rs.spec.approved_on }}{% endif %})</small></p>
{% if rs.rules %}<table><tr><th>rule</th><th>kind</th><th>title</th><th>evidence</th></tr>
{% for rid, c in rs.rules|dictsort %}<tr><td><a href="/rule/{{ rid }}">{{ rid }}</a></td>
<td>{{ c.rule.then.kind }}{% if c.rule.then.action %} ({{ c.rule.then.action }}){% endif %}</td>
<td>{{ c.rule.title }}</td><td>{{ c.rule.then.evidence|join(", ") or "none" }}
{% if c.rule.evidence_status == "unverified" %}<b>unverified</b>{% endif %}</td></tr>{% endfor %}</table>
{% endif %}</div>{% endfor %}{% endblock %}"""

RULE = """{% extends "base" %}{% block body %}<div id="rule-page" data-rule="{{ c.rule.id }}">
<h1>{{ c.rule.id }}</h1><p>{{ c.rule.title }} &mdash; <b>{{ rs.name }} {{ rs.version }}</b>
<span class="status-{{ rs.spec.status }}">{{ rs.spec.status }}</span> ({{ rs.source.name }})</p>
{% if message %}<p class="msg" id="message">{{ message }}</p>{% endif %}
<h2>In plain language</h2><div class="plain" id="plain">{{ plain }}</div>
<h2>Decision table</h2><table id="decision"><tr><th>fact</th>
<th>test</th><th>value</th><th>parameter</th></tr>
{% for row in table %}<tr><td>{{ row.indent }}{{ row.fact }}</td><td>{{ row.op }}</td><td>{{ row.value }}</td>
<td>{{ row.param }}</td></tr>{% endfor %}</table>
<h2>Parameters</h2>
{% if params %}<form id="params" method="post" action="/rule/{{ c.rule.id }}/save">""" + CSRF + """
<input type="hidden" name="base" value="{{ base }}">
<table><tr><th>parameter</th><th>value</th><th>unit</th><th>meaning</th><th>declared in</th></tr>
{% for p in params %}<tr><td>{{ p.name }}</td><td>{% if p.own %}<input type="text" name="{{ p.name }}"
 value="{{ p.value }}" data-saved="{{ p.value }}">{% else %}<span class="readonly" data-param="{{ p.name }}"
 >{{ p.value }}</span>{% endif %}</td><td>{{ p.unit }}</td><td>{{ p.description }}</td><td>{{ p.file }}
{% if not p.own %}<br><small>shared: change it on a {{ p.ruleset }} rule page{% if p.link %}
(<a href="/rule/{{ p.link }}">{{ p.link }}</a>){% endif %}</small>{% endif %}</td></tr>
{% endfor %}</table>
{% if own %}<button type="button" id="preview">Preview impact on sample patients</button>
<button type="submit" id="save">Save (bumps version, back to draft for review)</button>{% endif %}</form>
{% else %}<p>This rule has no parameters; edit its YAML below.</p>{% endif %}
<div id="impact" class="box">Change a value and press <i>Preview
impact</i> to see which sample patients change.</div>
<h2>Try on one patient</h2><p><select id="sample">{% for n in samples %}<option>{{ n }}</option>{% endfor %}
</select> <button type="button" id="try">Run with the values above</button></p><div id="patient"></div>
<h2>Finding</h2><table><tr><th>code</th><td>{{ c.rule.then.code }}</td></tr>
<tr><th>kind</th><td>{{ c.rule.then.kind }} {{ c.rule.then.strength or c.rule.then.action or "" }}</td></tr>
<tr><th>summary</th><td>{{ c.rule.then.summary }}</td></tr>
<tr><th>detail</th><td>{{ c.rule.then.detail }}</td></tr>
<tr><th>evidence</th><td>{% for e in evidence %}<a href="{{ e.url }}">{{ e.label }}</a>: {{ e.citation }}<br>
{% endfor %}</td></tr></table>
<h2>Rule YAML</h2><form method="post" action="/rule/{{ c.rule.id }}/yaml" id="yaml-form">""" + CSRF + """
<input type="hidden" name="base" value="{{ base }}">
<textarea name="text" rows="18" cols="110" id="yaml">{{ yaml_text }}</textarea><br>
<button type="submit" id="save-yaml">Save rule YAML</button></form></div>{% endblock %}"""

RUN = """{% extends "base" %}{% block body %}<h1>Run a patient</h1>
<form method="post" action="/run" enctype="multipart/form-data" class="box" id="run-form">""" + CSRF + """
<label>Sample <select name="sample" id="sample"><option value="">(upload instead)</option>
{% for n in samples %}<option {% if n == chosen %}selected{% endif %}>{{ n }}</option>{% endfor %}
</select></label> or upload a bundle <input type="file" name="bundle" id="bundle">
<label>as of <input type="text" name="as_of" value="{{ as_of or '' }}" placeholder="sidecar or today"></label>
<button type="submit" id="run">Run</button></form>{{ fragment|safe }}{% endblock %}"""

PATIENT = """<div class="patient-result"><h3>{{ ev.patient }} as of {{ ev.as_of }}</h3>
{% if overrides %}<p>with unsaved values: {% for k, v in overrides.items() %}{{ k }} = {{ v }} {% endfor %}
</p>{% endif %}
<table class="findings"><tr><th>severity</th><th>code</th>
<th>action / strength</th><th>summary</th><th>rule version</th></tr>
{% for f in ev.findings %}<tr><td>{{ f.severity }}</td><td class="code">{{ f.code }}</td>
<td>{{ f.action or f.strength or "" }}</td><td>{{ f.summary }}
</td><td>{{ f.rule.ruleset }} {{ f.rule.version }}</td></tr>
{% else %}<tr><td colspan="5">No findings.</td></tr>{% endfor %}</table>
<h3>Why (every rule{% if only %} matching {{ only }}{% endif %})</h3>
<table class="explain"><tr><th>rule</th><th>outcome</th><th>why</th></tr>
{% for e in rows %}<tr><td>{{ e.rule_id }}</td><td class="{{ e.outcome.split()[0] }}">{{ e.outcome }}</td>
<td>{{ e.reason }}</td></tr>{% endfor %}</table></div>"""

LINT = """{% extends "base" %}{% block body %}<h1>Lint</h1>
<p id="lint-summary" class="{{ 'msg' if ok else 'error'
}}">{{ errors|length }} error(s), {{ warnings|length }}
warning(s){% if ok %}: the rules can go to review{% endif %}</p>
{% for title, items in (("Errors", errors), ("Warnings", warnings), ("Notes", notes)) %}{% if items %}
<h2>{{ title }}</h2><ul>{% for d in items %}<li>{{ d }}</li>{% endfor %}</ul>{% endif %}{% endfor %}
{% endblock %}"""

RUN_ERROR = """<p class="error" id="run-error">{{ reason }}</p>"""

ERROR = """{% extends "base" %}{% block body %}<h1>{{ status }}: {{ heading }}</h1>
<p class="error" id="error">{{ reason }}</p>{% if back %}<p><a href="{{ back }}" id="back">Back</a>
(reload it to see the current version)</p>{% endif %}{% endblock %}"""

ENV = Environment(
    loader=DictLoader(
        {
            "base": BASE,
            "index": INDEX,
            "rule": RULE,
            "run": RUN,
            "patient": PATIENT,
            "lint": LINT,
            "error": ERROR,
            "run-error": RUN_ERROR,
        }
    ),
    autoescape=True,
)


def render(name: str, **context: Any) -> str:
    """One page or fragment as HTML."""
    return ENV.get_template(name).render(**context)
