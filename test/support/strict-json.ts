// A strict JSON reader for log lines: JSON.parse keeps the last of two equal keys
// without a word, so this one walks the text itself and throws on a key that an
// object already has (and on anything JSON.parse would refuse).

/** Parses one JSON text; throws naming the key and where, when an object repeats a key. */
export function parseStrictJson(text: string): unknown {
  let i = 0;
  const fail = (why: string): never => {
    throw new Error(`${why} at offset ${i} of ${text.length > 300 ? `${text.slice(0, 300)}...` : text}`);
  };
  const space = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const string = (): string => {
    const start = i;
    if (text[i] !== '"') fail('a string expected');
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    if (i >= text.length) fail('an unterminated string');
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (path: string): unknown => {
    space();
    const c = text[i];
    if (c === '{') {
      i++;
      const out: Record<string, unknown> = {};
      const keys = new Set<string>();
      space();
      if (text[i] === '}') {
        i++;
        return out;
      }
      for (;;) {
        space();
        const key = string();
        if (keys.has(key)) fail(`duplicate key "${key}" in ${path || 'the top object'}`);
        keys.add(key);
        space();
        if (text[i++] !== ':') fail('":" expected');
        out[key] = value(`${path}.${key}`);
        space();
        const next = text[i++];
        if (next === '}') return out;
        if (next !== ',') fail('"," or "}" expected');
      }
    }
    if (c === '[') {
      i++;
      const out: unknown[] = [];
      space();
      if (text[i] === ']') {
        i++;
        return out;
      }
      for (;;) {
        out.push(value(`${path}[${out.length}]`));
        space();
        const next = text[i++];
        if (next === ']') return out;
        if (next !== ',') fail('"," or "]" expected');
      }
    }
    if (c === '"') return string();
    const m = /^(-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?|true|false|null)/.exec(text.slice(i, i + 400));
    if (!m) return fail('a value expected');
    i += m[0].length;
    return JSON.parse(m[0]) as unknown;
  };
  const out = value('');
  space();
  if (i !== text.length) fail('text after the value');
  return out;
}
