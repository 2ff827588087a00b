// Workbench page behaviour. Served as a file so the Content-Security-Policy forbids inline script.
'use strict';
const csrf = document.querySelector('meta[name=csrf-token]').content;

async function postForm(url, data, target) {
  const box = document.getElementById(target);
  box.innerHTML = '<p class="progress">running...</p>';
  const r = await fetch(url, {method: 'POST', body: data, headers: {'X-CSRF-Token': csrf}});
  box.innerHTML = await r.text();
  return r;
}

function formData(formId, extra) {
  const form = document.getElementById(formId);
  const data = form ? new FormData(form) : new FormData();
  for (const [k, v] of Object.entries(extra || {})) data.append(k, v);
  return data;
}

// Long jobs (lint, impact): start, then poll the job until it is done, showing its progress.
async function runJob(url, data, target) {
  const box = document.getElementById(target);
  box.innerHTML = '<p class="progress">starting...</p>';
  const r = await fetch(url, {method: 'POST', body: data, headers: {'X-CSRF-Token': csrf}});
  if (!r.ok) { box.innerHTML = await r.text(); return; }
  const job = await r.json();
  for (;;) {
    const s = await fetch('/jobs/' + job.id);
    const state = await s.json();
    if (state.done) {
      box.innerHTML = state.html;
      box.dispatchEvent(new CustomEvent('job-done', {bubbles: true}));
      return;
    }
    box.innerHTML = '<p class="progress" data-done="' + state.progress + '" data-total="' + state.total +
      '">' + state.label + ': ' + state.progress + ' of ' + state.total + '</p>';
    await new Promise((ok) => setTimeout(ok, 200));
  }
}

function wire(id, handler) {
  const el = document.getElementById(id);
  if (el) el.addEventListener('click', handler);
}

// rule page and knowledge entry page: preview impact of the unsaved values, try one patient
wire('preview', (e) => {
  const el = e.currentTarget;
  runJob(el.dataset.url, formData(el.dataset.form), 'impact').then(() => offerPatients());
});
wire('try', (e) => {
  const el = e.currentTarget;
  postForm(el.dataset.url, formData(el.dataset.form,
    {sample: document.getElementById('sample').value, rule: el.dataset.rule || ''}), 'patient');
});
wire('run-lint', () => runJob('/lint/run', new FormData(), 'lint-result'));

// after an impact preview, the patients the edit changes come first in "Try on one patient"
function offerPatients() {
  const select = document.getElementById('sample');
  const impact = document.querySelector('#impact .impact');
  if (!select || !impact) return;
  const changed = (impact.dataset.patients || '').split(' ').filter((p) => p);
  if (!changed.length) return;
  let group = document.getElementById('changed-patients');
  if (group) group.remove();
  group = document.createElement('optgroup');
  group.id = 'changed-patients';
  group.label = 'changed by this edit';
  for (const name of changed) {
    const opt = document.createElement('option');
    opt.value = name;
    opt.textContent = name;
    group.appendChild(opt);
  }
  select.insertBefore(group, select.firstChild);
  select.value = changed[0];
}
