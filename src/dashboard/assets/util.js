// Small DOM and formatting helpers of the dashboard page.

const SVG = 'http://www.w3.org/2000/svg';

/** An element with attributes and children (strings become text). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

/** Writes `text` only when it changed: no DOM work, and nothing for a screen reader, when nothing changed. */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

export function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function fmtMs(ms) {
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

export function fmtUptime(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${String(m % 60).padStart(2, '0')} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

export function fmtTime(epochMs) {
  return new Date(epochMs).toLocaleTimeString();
}

/**
 * Draws `values` as a small line in `cell` (made once, then only its points change), with `text` beside it. The
 * scale runs from 0 to the largest value, at least `min` (so a flat 0.1 ms does not fill the height), or `max`.
 */
export function sparkline(cell, values, { min = 0, max, label, text, width = 64, height = 18 }) {
  let svg = cell.querySelector('svg');
  if (!svg) {
    svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('class', 'spark');
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    svg.setAttribute('width', String(width));
    svg.setAttribute('height', String(height));
    svg.setAttribute('role', 'img');
    svg.setAttribute('focusable', 'false');
    svg.append(document.createElementNS(SVG, 'polyline'));
    cell.append(svg);
    if (text !== undefined) cell.append(el('span', { class: 'value' }));
  }
  const top = max ?? Math.max(min, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((v, i) => {
    const y = height - 1 - (Math.min(v, top) / (top || 1)) * (height - 2);
    return `${(i * step).toFixed(1)},${y.toFixed(1)}`;
  });
  svg.firstChild.setAttribute('points', points.join(' '));
  const latest = values.at(-1);
  svg.setAttribute('aria-label', `${label}, last ${values.length} s${text ? `, now ${text}` : ''}`);
  if (text !== undefined) setText(cell.querySelector('.value'), text);
  else svg.setAttribute('data-last', String(latest));
}
