// Fenced code blocks of a Markdown page, with the attributes of their info string, so that a
// test can run what a page tells users to type:
//
//   ```sh ours on=gwa bg="s2cs ready" exit=0 err="notice"
//
// The first word is the language (what renderers use); the rest is `key=value`,
// `key="value with spaces"` (\" for a quote; other backslashes stay, for regular expressions)
// or a bare flag. Renderers ignore them.

export interface DocBlock {
  /** 1-based line of the opening fence. */
  readonly line: number;
  readonly lang: string;
  readonly attrs: ReadonlyMap<string, string>;
  readonly flags: ReadonlySet<string>;
  readonly body: string;
  /** The nearest `##` heading above the block. */
  readonly section: string;
}

const ATTR = /([A-Za-z][\w-]*)(?:=(?:"((?:[^"\\]|\\.)*)"|(\S+)))?/g;

export function docBlocks(markdown: string): DocBlock[] {
  const blocks: DocBlock[] = [];
  const lines = markdown.split('\n');
  let section = '';
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (/^##\s/.test(l)) section = l.replace(/^#+\s*/, '');
    const open = /^```(\S*)\s*(.*)$/.exec(l);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]!); i++) body.push(lines[i]!);
    const attrs = new Map<string, string>();
    const flags = new Set<string>();
    for (const m of open[2]!.matchAll(ATTR)) {
      const value = m[2] !== undefined ? m[2].replace(/\\"/g, '"') : m[3];
      if (value === undefined) flags.add(m[1]!);
      else attrs.set(m[1]!, value);
    }
    blocks.push({ line: start + 1, lang: open[1]!, attrs, flags, body: body.join('\n'), section });
  }
  return blocks;
}
