// Text from the wire shown back in status messages and logs. Anyone can send a
// uid of astral-plane characters, lone surrogates or control characters: cutting
// such text on UTF-16 units splits surrogate pairs, and grpc-js percent-encodes
// status details with encodeURI, which throws on a lone surrogate (outside any
// handler: the process died). So text is cut on code points and made well formed.

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * Input to quote inside a message: at most `max` code points (then "..."), lone
 * surrogates as U+FFFD, control characters as \xNN so that a log line stays one line.
 * Stops reading after `max` code points: a 4 MiB field costs no more than a short one.
 */
export function shown(text: unknown, max = 40): string {
  const s = typeof text === 'string' ? text : String(text);
  let out = '';
  let n = 0;
  for (const ch of s) {
    if (n === max) return `${out}...`;
    n++;
    const c = ch.codePointAt(0)!;
    if (c >= 0xd800 && c <= 0xdfff) out += '\uFFFD';
    else if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return out;
}

/** A message safe as gRPC status details: well formed, and at most `max` code points. */
export function safeDetails(message: string, max = 2000): string {
  const wellFormed = message.replace(LONE_SURROGATE, '\uFFFD');
  return wellFormed.length <= max ? wellFormed : shown(wellFormed, max);
}

/** One line: commander's, OpenSSL's and a Python traceback's texts carry newlines that would break "one error, one line". */
export function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}
