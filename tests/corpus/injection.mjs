// Script-injection payloads for the rendering tests of the desktop app and
// the console: each, if any part of it ran as script, would call
// `__pwned(n)` with its own number. 41 forms (tags with event handlers,
// script in SVG and MathML, javascript: URLs, template and Markdown
// injection, broken and nested tags, entities, bidi overrides) times 8
// surroundings (alone, after and before Chinese text, inside quotes, after
// a closing title/textarea/style tag) = 328 payloads, each at most 200
// characters with no control characters (what a name may hold).

const forms = [
  (c) => `<script>${c}</script>`,
  (c) => `<img src=x onerror=${c}>`,
  (c) => `<img src="x" onerror="${c}">`,
  (c) => `<IMG SRC=x OnErRoR=${c}>`,
  (c) => `<svg onload=${c}>`,
  (c) => `<svg/onload=${c}>`,
  (c) => `<svg><script>${c}</script></svg>`,
  (c) => `<svg><animate onbegin=${c} attributeName=x dur=1s>`,
  (c) => `<math><mtext><img src=x onerror=${c}></mtext></math>`,
  (c) => `"><img src=x onerror=${c}>`,
  (c) => `'><svg onload=${c}>`,
  (c) => `<iframe srcdoc="<script>parent.${c}</script>">`,
  (c) => `<iframe src="javascript:${c}">`,
  (c) => `<a href="javascript:${c}">link</a>`,
  (c) => `javascript:${c}`,
  (c) => `<body onload=${c}>`,
  (c) => `<details open ontoggle=${c}>`,
  (c) => `<input autofocus onfocus=${c}>`,
  (c) => `<video><source onerror=${c}></video>`,
  (c) => `<audio src=x onerror=${c}>`,
  (c) => `<object data="javascript:${c}">`,
  (c) => `<embed src="javascript:${c}">`,
  (c) => `<marquee onstart=${c}>`,
  (c) => `<x onmouseover=${c}>hover</x>`,
  (c) => `<form><button formaction=javascript:${c}>go</button></form>`,
  (c) => `<div style="background:url(javascript:${c})">`,
  (c) => `<meta http-equiv="refresh" content="0;url=javascript:${c}">`,
  (c) => `<base href="javascript:${c}//">`,
  (c) => `<scr<script>ipt>${c}</scr</script>ipt>`,
  (c) => `<!--<img src=--><img src=x onerror=${c}//>`,
  (c) => `<img src=x onerror=&#x${c.length.toString(16)};${c}>`,
  (c) => `&lt;script&gt;${c}&lt;/script&gt;`,
  (c) => `%3Cscript%3E${c}%3C/script%3E`,
  (c) => `{{constructor.constructor('${c}')()}}`,
  (c) => `\${${c}}`,
  (c) => `[click](javascript:${c})`,
  (c) => `![x](javascript:${c})`,
  (c) => `<table background="javascript:${c}">`,
  (c) => `\u202E<img src=x onerror=${c}>`,
  (c) => `<noscript><p title="</noscript><img src=x onerror=${c}>">`,
  (c) => `<style>@import 'javascript:${c}';</style>`,
];

const surroundings = [
  (p) => p,
  (p) => `张伟${p}`,
  (p) => `${p}李娜`,
  (p) => `"${p}"`,
  (p) => `'${p}'`,
  (p) => `</title>${p}`,
  (p) => `</textarea>${p}`,
  (p) => `</style>${p}`,
];

/** Every payload, numbered from 1 (payload n calls `__pwned(n)`). */
export function payloads() {
  const out = [];
  for (const s of surroundings) {
    for (const f of forms) {
      const n = out.length + 1;
      out.push(s(f(`__pwned(${n})`)));
    }
  }
  return out;
}

/** Attributes that hold a URL a browser may load or navigate to. */
const URL_ATTRS = new Set(['href', 'src', 'action', 'formaction', 'data', 'background', 'poster', 'srcdoc', 'xlink:href']);

/**
 * The shape of what `root` holds: every element's tag and attribute names,
 * in document order. A payload rendered as text leaves it as a harmless name
 * would; a payload that became markup adds elements or attributes.
 */
export function shape(root) {
  return [...root.querySelectorAll('*')].map((el) => `${el.tagName}[${[...el.attributes].map((a) => a.name).sort().join(' ')}]`);
}

/** Event handlers anywhere under `root`, and javascript: in any attribute that is a URL. */
export function dangers(root) {
  const found = [];
  for (const el of root.querySelectorAll('*')) {
    for (const a of el.attributes) {
      if (a.name.startsWith('on')) found.push(`${el.tagName} ${a.name}`);
      if (URL_ATTRS.has(a.name) && /^\s*javascript:/i.test(a.value)) found.push(`${el.tagName} ${a.name}=${a.value}`);
    }
  }
  return found;
}
