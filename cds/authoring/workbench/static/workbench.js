// The workbench's only script (served from /static; the Content-Security-Policy allows no inline
// script). Every POST carries the session's CSRF token in the X-CSRF-Token header.
'use strict';

const csrf = () => document.querySelector('meta[name=csrf-token]').content;

async function post(url, data) {
  const r = await fetch(url, {method: 'POST', body: data, headers: {'X-CSRF-Token': csrf()}});
  return {status: r.status, text: await r.text()};
}

function show(target, html) {
  document.getElementById(target).innerHTML = html;
}

function formData(form, extra) {
  const data = form ? new FormData(form) : new FormData();
  for (const [k, v] of Object.entries(extra || {})) data.append(k, v);
  return data;
}

function rulePage(root) {
  const form = document.getElementById('params');
  const rule = root.dataset.rule;
  const preview = document.getElementById('preview');
  if (preview) {
    preview.addEventListener('click', async () => {
      show('impact', 'running...');
      const r = await post('/impact', formData(form, {rule}));
      show('impact', r.text);
    });
  }
  document.getElementById('try').addEventListener('click', async () => {
    show('patient', 'running...');
    const sample = document.getElementById('sample').value;
    const r = await post('/run/fragment', formData(form, {sample, rule}));
    show('patient', r.text);
  });
}

document.addEventListener('DOMContentLoaded', () => {
  const rule = document.getElementById('rule-page');
  if (rule) rulePage(rule);
});
