// A notice's body (Markdown) to safe HTML: markdown-it with raw HTML off
// (an `<img onerror>` or `<script>` in the text stays text), images off,
// links only http(s)/mailto and shown with their target, then DOMPurify with
// a short allow-list as a second wall. Nothing here ever runs script.
import MarkdownIt from 'markdown-it';
import DOMPurify from 'dompurify';

const md = new MarkdownIt({ html: false, linkify: false, typographer: false });
md.disable(['image']);

const SAFE_LINK = /^(https?:|mailto:)/i;
md.validateLink = (url: string) => SAFE_LINK.test(url.trim());

// A link shows its text followed by its target, so nobody clicks a
// disguised address; the app opens it in the system browser.
md.renderer.rules.link_close = (tokens, idx, options, _env, self) => {
  let href = '';
  for (let i = idx - 1; i >= 0; i--) {
    const token = tokens[i];
    if (token?.type === 'link_open') {
      href = String(token.attrGet('href') ?? '');
      break;
    }
  }
  return `${self.renderToken(tokens, idx, options)}<span class="link-target"> (${md.utils.escapeHtml(href)})</span>`;
};

const ALLOWED_TAGS = [
  'p', 'br', 'hr', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'ul', 'ol', 'li', 'strong', 'em', 's', 'del', 'code', 'pre',
  'blockquote', 'a', 'span', 'table', 'thead', 'tbody', 'tr', 'th', 'td',
];

export function renderMarkdown(body: string): string {
  const html = md.render(body);
  return DOMPurify.sanitize(html, {
    ALLOWED_TAGS,
    ALLOWED_ATTR: ['href', 'class', 'style'],
    ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i,
  });
}
