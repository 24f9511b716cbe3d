// A tiny XML well-formedness check for the report's SVG (no dependency): balanced tags,
// quoted attributes, no raw `<` or stray `&` in text or attribute values, known entities only.

const ENTITY = /^&(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);/;
const NAME = '[A-Za-z_][\\w.:-]*';
const ATTRIBUTES = new RegExp(`^(?:\\s+${NAME}\\s*=\\s*(?:"[^"<]*"|'[^'<]*'))*\\s*$`);

/** The problems that make `xml` not well-formed (empty when it is). */
export function xmlProblems(xml: string): string[] {
  const problems: string[] = [];
  const open: string[] = [];
  const text = (t: string, at: number): void => {
    for (let i = t.indexOf('&'); i >= 0; i = t.indexOf('&', i + 1)) {
      if (!ENTITY.test(t.slice(i))) problems.push(`a stray & at ${at + i}`);
    }
  };
  let at = 0;
  while (at < xml.length) {
    const lt = xml.indexOf('<', at);
    if (lt < 0) {
      text(xml.slice(at), at);
      break;
    }
    text(xml.slice(at, lt), at);
    const gt = xml.indexOf('>', lt);
    if (gt < 0) {
      problems.push(`an unclosed tag at ${lt}`);
      break;
    }
    const tag = xml.slice(lt + 1, gt);
    at = gt + 1;
    const m = new RegExp(`^(/?)(${NAME})([^]*?)(/?)$`).exec(tag);
    if (!m) {
      problems.push(`a malformed tag <${tag}> at ${lt}`);
      continue;
    }
    const [, closing, name, attributes, selfClosing] = m;
    if (closing) {
      if (attributes!.trim() || selfClosing) problems.push(`a malformed end tag </${tag}> at ${lt}`);
      const expected = open.pop();
      if (expected !== name) problems.push(`</${name}> at ${lt} closes <${expected ?? 'nothing'}>`);
      continue;
    }
    if (!ATTRIBUTES.test(attributes!)) problems.push(`malformed attributes in <${name}> at ${lt}`);
    text(attributes!, lt);
    if (!selfClosing) open.push(name!);
  }
  if (open.length) problems.push(`unclosed elements: ${open.join(', ')}`);
  return problems;
}

/** Every `<svg>…</svg>` element of an HTML page. */
export function svgElements(html: string): string[] {
  return html.match(/<svg[\s>][^]*?<\/svg>/g) ?? [];
}
