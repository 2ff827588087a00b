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
<a href="/">Rules</a><a href="/knowledge">Knowledge</a><a href="/review">Review</a>
<a href="/run">Run a patient</a><a href="/lint">Lint</a>
<form method="get" action="/search" role="search"><input type="search" name="q" id="q" value="{{ q or '' }}"
 placeholder="search rules, drugs, codes, units, cues" aria-label="search"></form>
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
""" + "{% include 'try' %}" + """
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

TRY = """<h2>Try on one patient</h2><p>Patients the change affects are listed first once you have
previewed its impact.</p><p><select id="sample">{% for n in samples %}<option value="{{ n }}">{{ n }}</option>
{% endfor %}</select> <button type="button" id="try">Run with the values above</button></p>
<div id="patient"></div>"""

LINT = """{% extends "base" %}{% block body %}<h1>Lint</h1>
<p>Every rule file, against the sample cohort and the last commit.</p>
<div id="lint" class="box" data-start="/lint/run">starting...</div>{% endblock %}"""

LINT_RESULT = """<p id="lint-summary" class="{{ 'msg' if ok else 'error'
}}">{{ errors|length }} error(s), {{ warnings|length }}
warning(s){% if ok %}: the rules can go to review{% endif %}</p>
{% for title, items in (("Errors", errors), ("Warnings", warnings), ("Notes", notes)) %}{% if items %}
<h2>{{ title }}</h2><ul>{% for d in items %}<li>{{ d }}</li>{% endfor %}</ul>{% endif %}{% endfor %}"""

SEARCH = """{% extends "base" %}{% block body %}<h1>Search</h1>
{% if q %}<p id="search-summary">{{ hits|length }} result(s) for <b>{{ q }}</b></p>
<table id="results"><tr><th>kind</th><th>entry</th><th>where</th></tr>
{% for h in hits %}<tr class="hit" data-kind="{{ h.kind }}"><td>{{ h.kind }}</td>
<td><a href="{{ h.link }}">{{ h.label }}</a></td><td>{{ h.detail }}</td></tr>{% endfor %}</table>
{% else %}<p>Type a drug, a code, a unit, a cue word or a rule id in the search box.</p>{% endif %}
{% endblock %}"""

KNOWLEDGE = """{% extends "base" %}{% block body %}<h1>Knowledge</h1>
<p>The drug catalogue, value sets and text cues the rules read. Open an entry to add a name, a code,
a unit spelling or a cue phrase; <a href="/knowledge/new-product" id="new-product">add a product</a>
(a brand or biosimilar of a catalogue agent). Every addition names its source, shows its impact on
the sample patients before it is saved, and sends the file back to draft for review.</p>
{% for f in files %}<div class="box"><h2>{{ f.file }} <small>{{ f.version }}
<span class="status-{{ f.status }}">{{ f.status }}</span></small></h2><p>
{% for p in f.pages %}<a href="{{ p.link }}">{{ p.title }}</a>{% if not loop.last %} &middot; {% endif %}
{% endfor %}</p></div>{% endfor %}{% endblock %}"""

ENTRY = """{% extends "base" %}{% block body %}<div id="knowledge-page">
<h1>{{ page.title }}</h1><p><code>{{ page.path }}</code> in <b>{{ page.file }} {{ version }}</b>
<span class="status-{{ status }}">{{ status }}</span></p>
{% if message %}<p class="msg" id="message">{{ message }}</p>{% endif %}
<h2>Entry</h2><div class="plain" id="entry-yaml">{{ entry_yaml }}</div>
{% for l in page.lists %}<h3>{{ l.path }} <small>({{ l.members|length }} {{ 'spellings' if l.kind == 'map'
 else 'members' }})</small></h3><p class="members" data-path="{{ l.path }}">{{ l.members|join(' · ') }}</p>
{% if l.sources %}<ul class="sources">{% for m, src in l.sources.items() %}<li>{{ m }}: {{ src }}</li>
{% endfor %}</ul>{% endif %}{% endfor %}
{% if page.lists %}<h2>Add a member</h2>
<form id="knowledge-form" class="box" method="post" action="/knowledge/save">""" + CSRF + """
<input type="hidden" name="base" value="{{ base }}"><input type="hidden" name="op" value="member">
<input type="hidden" name="file" value="{{ page.file }}">
<table><tr><th>add to</th><td><select name="path" id="path">{% for l in page.lists %}
<option value="{{ l.path }}" data-kind="{{ l.kind }}">{{ l.path }}{% if l.kind == 'map' %} (with factor)
{% endif %}</option>{% endfor %}</select></td></tr>
<tr><th>new member</th><td><input type="text" class="wide" name="member" id="member" required></td></tr>
<tr><th>factor</th><td><input type="text" name="factor" id="factor"> <small>unit maps only: what a
value in this unit is multiplied by to reach the canonical unit</small></td></tr>
<tr><th>source</th><td><input type="text" class="wide" name="source" id="source" required
 placeholder="label, lab manual, reference: where this comes from"></td></tr></table>
""" + "{% include 'knowledge-buttons' %}" + """</form>{% endif %}
<div id="impact" class="box">Fill in the form and press <i>Preview impact</i> to see which sample
patients change.</div>""" + "{% include 'try' %}" + """</div>{% endblock %}"""

KNOWLEDGE_BUTTONS = """<button type="button" id="preview">Preview impact on sample patients</button>
<button type="submit" id="save">Save (bumps version, back to draft for review)</button>"""

PRODUCT = """{% extends "base" %}{% block body %}<div id="knowledge-page">
<h1>Add a product</h1><p>A brand, biosimilar or other form of catalogue agents, written to
<b>catalogue/products.yaml {{ version }}</b> <span class="status-{{ status }}">{{ status }}</span>.
A record naming the product by code or by name then counts as its agents.</p>
<form id="knowledge-form" class="box" method="post" action="/knowledge/save">""" + CSRF + """
<input type="hidden" name="base" value="{{ base }}"><input type="hidden" name="op" value="product">
<input type="hidden" name="file" value="catalogue/products.yaml">
<table><tr><th>id</th><td><input type="text" name="product_id" id="product_id" required
 placeholder="lower_case_id"></td></tr>
<tr><th>display</th><td><input type="text" class="wide" name="display" id="display" required
 placeholder="what a clinician reads"></td></tr>
<tr><th>counts as agents</th><td><input type="text" class="wide" name="agents" id="agents" required
 list="agent-ids"> <small>comma-separated catalogue agent ids</small><datalist id="agent-ids">
{% for a in agents %}<option value="{{ a }}">{% endfor %}</datalist></td></tr>
<tr><th>RxNorm codes</th><td><input type="text" class="wide" name="rxnorm" id="rxnorm"> <small>brand and
clinical-drug RXCUIs, comma-separated</small></td></tr>
<tr><th>names</th><td><input type="text" class="wide" name="names" id="names" required> <small>names as
records write them (whole words, case-insensitive), comma-separated</small></td></tr>
<tr><th>covers</th><td><input type="text" class="wide" name="covers" id="covers"> <small>optional: words
also consumed when the product matched</small></td></tr>
<tr><th>route</th><td><select name="route" id="route">{% for r in routes %}<option>{{ r }}</option>
{% endfor %}</select></td></tr>
<tr><th>source</th><td><input type="text" class="wide" name="source" id="source" required
 placeholder="label, regulator listing, RxNorm"></td></tr></table>
""" + "{% include 'knowledge-buttons' %}" + """</form>
<div id="impact" class="box">Fill in the form and press <i>Preview impact</i> to see which sample
patients change.</div>""" + "{% include 'try' %}" + """</div>{% endblock %}"""

REVIEW = """{% extends "base" %}{% block body %}<h1>Review</h1>
{% if message %}<p class="msg" id="message">{{ message }}</p>{% endif %}
<p>Pending changes against {{ baseline }}: <b id="pending-count">{{ changes|length }}</b> file(s).</p>
{% for ch in changes %}<div class="box pending" data-file="{{ ch.file }}">
<h2>{{ ch.file }} <small>{{ ch.old_version or 'new' }} &rarr; {{ ch.version }}
<span class="status-{{ ch.status }}">{{ ch.status }}</span></small></h2>
<div class="side"><div><h3>YAML</h3><div class="diff">{% for line in ch.yaml_diff %}<span class="{{
 'add' if line.startswith('+') else 'del' if line.startswith('-') else 'hunk' if line.startswith('@@') else ''
 }}">{{ line }}</span>{% endfor %}</div></div><div><h3>In plain language</h3><ul class="plain-changes">
{% for item in ch.plain %}<li>{{ item }}</li>{% endfor %}</ul></div></div></div>
{% else %}<p id="no-changes">Nothing pending.</p>{% endfor %}
<h2>Lifecycle</h2><p>Submit a draft for review; a second pharmacist approves it (approval is refused
while lint has errors or an embedded test case fails, and records who and when in the file and its
changelog).</p>
<table id="lifecycle"><tr><th>file</th><th>version</th><th>status</th><th>actions</th></tr>
{% for f in files %}<tr data-file="{{ f.file }}"><td>{{ f.file }}</td><td>{{ f.version }}</td>
<td class="status-{{ f.status }}">{{ f.status }}{% if f.approved_by %} ({{ f.approved_by }},
{{ f.approved_on }}){% endif %}</td><td>{% for to in f.moves %}
<form method="post" action="/review/move" class="move" data-to="{{ to }}">""" + CSRF + """
<input type="hidden" name="file" value="{{ f.file }}"><input type="hidden" name="base" value="{{ f.base }}">
<input type="hidden" name="to" value="{{ to }}">{% if to == 'approved' %}<input type="text" name="by"
 placeholder="reviewer name" required aria-label="reviewer name">{% endif %}
<button type="submit">{{ labels[to] }}</button></form>{% endfor %}</td></tr>{% endfor %}</table>
<div id="approval" class="box">Approval checks run here.</div>{% endblock %}"""

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
            "lint-result": LINT_RESULT,
            "try": TRY,
            "search": SEARCH,
            "knowledge": KNOWLEDGE,
            "knowledge-entry": ENTRY,
            "knowledge-buttons": KNOWLEDGE_BUTTONS,
            "product": PRODUCT,
            "review": REVIEW,
            "error": ERROR,
            "run-error": RUN_ERROR,
        }
    ),
    autoescape=True,
)


def render(name: str, **context: Any) -> str:
    """One page or fragment as HTML."""
    return ENV.get_template(name).render(**context)
