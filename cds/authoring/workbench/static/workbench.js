// The workbench's only script (served from /static; the Content-Security-Policy allows no inline
// script). Every POST carries the session's CSRF token in the X-CSRF-Token header. Long checks
// (impact, lint, approval) are background jobs: the page polls /jobs/<id> and shows progress.
'use strict';

const csrf = () => document.querySelector('meta[name=csrf-token]').content;

async function post(url, data) {
  const r = await fetch(url, {method: 'POST', body: data, headers: {'X-CSRF-Token': csrf()}});
  return {status: r.status, text: await r.text()};
}

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function show(target, html) {
  document.getElementById(target).innerHTML = html;
}

function showError(target, message) {
  const box = document.getElementById(target);
  box.replaceChildren(el('p', {class: 'error', id: target + '-error'}, message));
}

// The reason of an error page (the server's pages put it in #error).
function reasonOf(r) {
  const doc = new DOMParser().parseFromString(r.text, 'text/html');
  const found = doc.getElementById('error');
  return `${r.status}: ${found ? found.textContent : 'the request failed'}`;
}

function formData(form, extra) {
  const data = form ? new FormData(form) : new FormData();
  for (const [k, v] of Object.entries(extra || {})) data.append(k, v);
  return data;
}

function progressOf(target, job) {
  const box = document.getElementById(target);
  const bar = el('progress', {id: target + '-progress'});
  if (job.total > 0) {
    bar.setAttribute('max', job.total);
    bar.setAttribute('value', job.done);
  }
  const count = job.total > 0 ? `: ${job.done} of ${job.total}` : '';
  const label = el('span', {class: 'stage'}, ` ${job.title}: ${job.stage}${count} (${job.seconds} s)`);
  box.replaceChildren(bar, label);
}

// Start a job with a POST, then poll it until it finishes; onDone(job) runs on success.
async function runJob(url, data, target, onDone) {
  show(target, 'starting...');
  const r = await post(url, data);
  if (r.status !== 200) {
    showError(target, reasonOf(r));
    return;
  }
  const started = JSON.parse(r.text);
  if (!started.job) {
    show(target, started.html || '');
    return;
  }
  const poll = async () => {
    const answer = await fetch('/jobs/' + started.job);
    const job = await answer.json();
    if (!job.finished) {
      progressOf(target, job);
      setTimeout(poll, 250);
    } else if (job.error) {
      showError(target, `${job.status}: ${job.error}`);
    } else {
      show(target, job.html);
      if (onDone) onDone(job);
    }
  };
  poll();
}

// After an impact preview: the patients it changes come first in "Try on one patient".
function changedFirst() {
  const impact = document.querySelector('#impact .impact');
  const select = document.getElementById('sample');
  if (!impact || !select) return;
  const changed = JSON.parse(impact.dataset.patients || '[]');
  const options = Array.from(select.options);
  for (const o of options) o.textContent = o.value;
  const first = changed.map((n) => options.find((o) => o.value === n)).filter(Boolean);
  const rest = options.filter((o) => !changed.includes(o.value));
  for (const o of first) o.textContent = `${o.value} (changes)`;
  select.replaceChildren(...first, ...rest);
  if (first.length) select.value = first[0].value;
}

async function tryPatient(url, form, extra) {
  show('patient', 'running...');
  const sample = document.getElementById('sample').value;
  const r = await post(url, formData(form, {...extra, sample}));
  if (r.status === 200) show('patient', r.text);
  else showError('patient', reasonOf(r));
}

function rulePage(root) {
  const form = document.getElementById('params');
  const rule = root.dataset.rule;
  const preview = document.getElementById('preview');
  if (preview) {
    preview.addEventListener('click', () => runJob('/impact', formData(form, {rule}), 'impact', changedFirst));
  }
  document.getElementById('try').addEventListener('click', () => tryPatient('/run/fragment', form, {rule}));
}

function knowledgePage() {
  const form = document.getElementById('knowledge-form');
  if (!form) return;
  document.getElementById('preview').addEventListener('click', () => {
    if (form.reportValidity()) runJob('/knowledge/preview', formData(form), 'impact', changedFirst);
  });
  document.getElementById('try').addEventListener('click', () => {
    if (form.reportValidity()) tryPatient('/knowledge/try', form, {});
  });
  const path = document.getElementById('path');
  const factor = document.getElementById('factor');
  if (path && factor) {
    const sync = () => {
      const map = path.selectedOptions[0].dataset.kind === 'map';
      factor.disabled = !map;
      factor.required = map;
    };
    path.addEventListener('change', sync);
    sync();
  }
}

function reviewPage() {
  for (const form of document.querySelectorAll('form.move[data-to=approved]')) {
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      runJob('/review/move', formData(form), 'approval', () => {
        const done = document.querySelector('#approval .approved');
        window.location.assign('/review?message=' + encodeURIComponent(done ? done.textContent : 'approved'));
      });
    });
  }
}

document.addEventListener('DOMContentLoaded', () => {
  const rule = document.getElementById('rule-page');
  if (rule) rulePage(rule);
  if (document.getElementById('knowledge-page')) knowledgePage();
  if (document.getElementById('lifecycle')) reviewPage();
  const lint = document.getElementById('lint');
  if (lint) runJob(lint.dataset.start, new FormData(), 'lint');
});
