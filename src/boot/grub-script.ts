/**
 * GRUB's script language, read but never run: the lexer and the parser of grub.cfg, as the GRUB manual ("Shell-like
 * scripting") describes it and GRUB's own lexer and grammar (grub-core/script/yylex.l and parser.y) define it.
 *
 * Lexing:
 * - words are separated by blanks (space, tab); `;`, newline, `{` and `}` end a word and are tokens of their own;
 *   `|`, `&`, `<`, `>` (and `||`, `&&`, `;;`) are tokens GRUB's grammar has no use for, so they are syntax errors;
 * - `#` at the start of a word starts a comment to the end of the line;
 * - `\` escapes the next character outside quotes (`\xHH` stays as written: GRUB keeps it for the kernel), and a
 *   backslash-newline is a line continuation, outside quotes and inside double quotes;
 * - single quotes keep everything; double quotes keep everything but `$` expansions and the escapes `\$`, `\\`, `\"`
 *   (any other backslash stays);
 * - `$name`, `${name}`, `$1`…, `$?`, `$#`, `$*`, `$@`; any other `$` is a syntax error, as in GRUB. `$"…"` (a
 *   translatable string) is read as a double-quoted string.
 * - a reserved word (`if`, `then`, `fi`, `menuentry` is not one: it is a command) is one only when it is the whole
 *   word, unquoted.
 *
 * Parsing follows parser.y: a command is a word, its arguments (reserved words allowed) and an optional `{ … }` block
 * (menuentry, submenu); `if … then … [elif … then …] [else …] fi`, `for NAME in WORDS; do … done`,
 * `while|until …; do … done`; `function NAME { … }` only at the top level. A syntax error ends the file at the
 * statement it is in, as GRUB stops executing a file there; the statements before it stand.
 *
 * Bounds: a token count cap and a nesting depth cap (each a syntax error past it), so that a hostile file costs time
 * and memory in proportion to its size, never more, and never exhausts the stack.
 */

/** A piece of a word: literal text, or a variable expanded when the word is. */
export type WordPart =
  | { k: 'text'; v: string; quoted: boolean }
  | { k: 'var'; name: string; quoted: boolean };

export interface Word {
  parts: WordPart[];
  /** The word's source text when it is made only of unquoted, unescaped characters (reserved words, names). */
  plain: string | null;
  line: number;
}

export type Token =
  | { t: 'word'; word: Word; line: number }
  | { t: 'nl' | ';' | '{' | '}' | 'eof'; line: number }
  | { t: 'op'; v: string; line: number }
  | { t: 'bad'; message: string; line: number };

export type Node =
  | { k: 'cmd'; words: Word[]; block: Node[] | null; line: number }
  | { k: 'if'; cond: Node[]; then: Node[]; else: Node[] | null; line: number }
  | { k: 'for'; name: string; words: Word[]; body: Node[]; line: number }
  | { k: 'while'; until: boolean; cond: Node[]; body: Node[]; line: number }
  | { k: 'function'; name: string; body: Node[]; line: number };

export interface ParsedScript {
  nodes: Node[];
  /** The syntax error that ended the file, if any. */
  error: { message: string; line: number } | null;
}

export interface ScriptLimits {
  /** Tokens read from one file; past it, a syntax error. */
  maxTokens: number;
  /** Nesting of blocks, ifs and loops; past it, a syntax error. */
  maxNesting: number;
}

export const DEFAULT_SCRIPT_LIMITS: ScriptLimits = { maxTokens: 200_000, maxNesting: 128 };

const RESERVED = new Set([
  'case', 'do', 'done', 'elif', 'else', 'esac', 'fi', 'for', 'if', 'in', 'select', 'then', 'until', 'while', 'function',
]);
/** `[[` and `]]` are tokens of GRUB's lexer that its grammar never accepts. */
const BAD_WORDS = new Set(['[[', ']]']);
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const NAME_START = /[A-Za-z_]/;
const NAME_CHAR = /[A-Za-z0-9_]/;
const SPECIAL = new Set(['?', '#', '*', '@']);
const HEX = /[0-9a-fA-F]/;

const isBlank = (c: string | undefined) => c === ' ' || c === '\t';
/** Characters with no special meaning in an unquoted word, and blanks: scanned a run at a time. */
const ORDINARY = /[^\\'"$ \t\n;{}|&<>]+/y;
const BLANKS = /[ \t]+/y;
/** Characters that end an unquoted word. */
const isBreak = (c: string | undefined) =>
  c === undefined || c === ' ' || c === '\t' || c === '\n' || c === ';' || c === '{' || c === '}' || c === '|' || c === '&' || c === '<' || c === '>';

class LexError extends Error {
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(message);
  }
}

/**
 * Splits `text` into tokens. Never throws: a lexical error (an unterminated quote, a stray `$`, too many tokens)
 * becomes a final `bad` token, after the tokens before it.
 */
export function tokenizeGrubScript(text: string, maxTokens = DEFAULT_SCRIPT_LIMITS.maxTokens): Token[] {
  // GRUB reads files line by line; a carriage return before a newline is dropped, as files edited elsewhere have one.
  const s = text.replace(/\r\n/g, '\n');
  const out: Token[] = [];
  let i = 0;
  let line = 1;
  // GRUB reads a file line by line, so what is found missing at the end (a closing quote, a "fi") is reported on the
  // file's last line.
  let lastLine = 1;
  for (let k = 0; k < s.length; k++) if (s[k] === '\n' && k + 1 < s.length) lastLine++;
  const push = (tok: Token) => {
    if (out.length >= maxTokens) throw new LexError(`more than ${maxTokens} tokens`, tok.line);
    out.push(tok);
  };

  /** Reads `$…` at s[i] === '$'; returns the variable part and advances. */
  const readVar = (quoted: boolean): WordPart => {
    const at = line;
    i++;
    const c = s[i];
    if (c === '{') {
      const close = s.indexOf('}', i + 1);
      const name = close < 0 ? '' : s.slice(i + 1, close);
      if (close < 0 || !(NAME.test(name) || /^[0-9]+$/.test(name) || SPECIAL.has(name))) {
        throw new LexError('"${" is not followed by a variable name and "}"', close < 0 ? lastLine : at);
      }
      i = close + 1;
      return { k: 'var', name, quoted };
    }
    if (c !== undefined && SPECIAL.has(c)) {
      i++;
      return { k: 'var', name: c, quoted };
    }
    if (c !== undefined && c >= '0' && c <= '9') {
      const start = i;
      while (s[i] !== undefined && s[i]! >= '0' && s[i]! <= '9') i++;
      return { k: 'var', name: s.slice(start, i), quoted };
    }
    if (c !== undefined && NAME_START.test(c)) {
      const start = i;
      while (s[i] !== undefined && NAME_CHAR.test(s[i]!)) i++;
      return { k: 'var', name: s.slice(start, i), quoted };
    }
    throw new LexError('"$" is not followed by a variable name', at);
  };

  /** Reads a double-quoted string from s[i] === '"' (or after `$"`); appends its parts. */
  const readDouble = (parts: WordPart[]) => {
    i++;
    let text = '';
    for (;;) {
      const c = s[i];
      if (c === undefined) throw new LexError('a double quote is not closed', lastLine);
      if (c === '"') {
        i++;
        break;
      }
      if (c === '\\') {
        const n = s[i + 1];
        if (n === '$' || n === '\\' || n === '"') {
          text += n;
          i += 2;
        } else if (n === '\n') {
          i += 2;
          line++;
        } else {
          text += '\\';
          i++;
        }
        continue;
      }
      if (c === '$') {
        parts.push({ k: 'text', v: text, quoted: true });
        text = '';
        parts.push(readVar(true));
        continue;
      }
      if (c === '\n') line++;
      text += c;
      i++;
    }
    // Even an empty quoted string makes an argument, so it is kept as a quoted part.
    parts.push({ k: 'text', v: text, quoted: true });
  };

  try {
    while (i < s.length) {
      const c = s[i]!;
      if (isBlank(c)) {
        BLANKS.lastIndex = i;
        BLANKS.test(s);
        i = BLANKS.lastIndex;
        continue;
      }
      if (c === '\\' && s[i + 1] === '\n') {
        // GRUB asks for another line; at the end of the file there is none.
        if (i + 2 >= s.length) throw new LexError('a line continuation at the end of the file', lastLine);
        i += 2;
        line++;
        continue;
      }
      if (c === '#') {
        while (i < s.length && s[i] !== '\n') i++;
        continue;
      }
      if (c === '\n') {
        push({ t: 'nl', line });
        i++;
        line++;
        continue;
      }
      if (c === ';') {
        if (s[i + 1] === ';') {
          push({ t: 'op', v: ';;', line });
          i += 2;
        } else {
          push({ t: ';', line });
          i++;
        }
        continue;
      }
      if (c === '{' || c === '}') {
        push({ t: c, line });
        i++;
        continue;
      }
      if (c === '|' || c === '&' || c === '<' || c === '>') {
        const double = (c === '|' || c === '&') && s[i + 1] === c;
        push({ t: 'op', v: double ? c + c : c, line });
        i += double ? 2 : 1;
        continue;
      }
      // A word.
      const startLine = line;
      const start = i;
      const parts: WordPart[] = [];
      let text = '';
      let plain = true;
      const flush = () => {
        if (text !== '') parts.push({ k: 'text', v: text, quoted: false });
        text = '';
      };
      while (!isBreak(s[i])) {
        const ch = s[i]!;
        if (ch === '\\') {
          plain = false;
          const n = s[i + 1];
          if (n === undefined || (n === '\n' && i + 2 >= s.length)) {
            throw new LexError('a line continuation at the end of the file', lastLine);
          } else if (n === '\n') {
            i += 2;
            line++;
          } else if (n === 'x' && HEX.test(s[i + 2] ?? '') && HEX.test(s[i + 3] ?? '')) {
            text += s.slice(i, i + 4);
            i += 4;
          } else {
            text += n;
            i += 2;
          }
        } else if (ch === "'") {
          plain = false;
          const close = s.indexOf("'", i + 1);
          if (close < 0) throw new LexError('a single quote is not closed', lastLine);
          flush();
          const v = s.slice(i + 1, close);
          for (const x of v) if (x === '\n') line++;
          parts.push({ k: 'text', v, quoted: true });
          i = close + 1;
        } else if (ch === '"') {
          plain = false;
          flush();
          readDouble(parts);
        } else if (ch === '$') {
          plain = false;
          flush();
          if (s[i + 1] === '"') {
            i++;
            readDouble(parts);
          } else {
            parts.push(readVar(false));
          }
        } else {
          // A run of ordinary characters at once: a long word costs one slice, not one concatenation a character.
          ORDINARY.lastIndex = i;
          ORDINARY.test(s);
          text += s.slice(i, ORDINARY.lastIndex);
          i = ORDINARY.lastIndex;
        }
      }
      flush();
      const raw = s.slice(start, i);
      if (plain && BAD_WORDS.has(raw)) throw new LexError(`"${raw}" is not GRUB syntax`, startLine);
      push({ t: 'word', word: { parts, plain: plain ? raw : null, line: startLine }, line: startLine });
    }
    push({ t: 'eof', line: lastLine });
  } catch (e) {
    if (!(e instanceof LexError)) throw e;
    // Room for the bad token even when the cap was what failed.
    out.push({ t: 'bad', message: e.message, line: e.line });
  }
  return out;
}

class ParseError extends Error {
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(message);
  }
}

const describe = (tok: Token): string => {
  switch (tok.t) {
    case 'word':
      return tok.word.plain !== null ? `"${tok.word.plain}"` : 'a word';
    case 'nl':
      return 'the end of the line';
    case 'eof':
      return 'the end of the file';
    case 'op':
      return `"${tok.v}"`;
    case 'bad':
      return tok.message;
    default:
      return `"${tok.t}"`;
  }
};

class Parser {
  private pos = 0;
  private depth = 0;

  constructor(
    private readonly toks: Token[],
    private readonly maxNesting: number,
  ) {}

  private peek(): Token {
    return this.toks[Math.min(this.pos, this.toks.length - 1)]!;
  }

  private next(): Token {
    const t = this.peek();
    if (this.pos < this.toks.length) this.pos++;
    return t;
  }

  private fail(tok: Token, expected: string): never {
    if (tok.t === 'bad') throw new ParseError(tok.message, tok.line);
    throw new ParseError(`expected ${expected}, found ${describe(tok)}`, tok.line);
  }

  private isReserved(tok: Token, ...words: string[]): boolean {
    return tok.t === 'word' && tok.word.plain !== null && (words.length === 0 ? RESERVED.has(tok.word.plain) : words.includes(tok.word.plain));
  }

  private skipNewlines(): void {
    while (this.peek().t === 'nl') this.next();
  }

  /** Consumes `;` or a newline and the newlines after it; false when there is none. */
  private delimiters(): boolean {
    const t = this.peek().t;
    if (t !== ';' && t !== 'nl') return false;
    this.next();
    this.skipNewlines();
    return true;
  }

  private expectReserved(word: string): void {
    const tok = this.next();
    if (!this.isReserved(tok, word)) this.fail(tok, `"${word}"`);
  }

  private nest<T>(line: number, f: () => T): T {
    if (++this.depth > this.maxNesting) throw new ParseError(`blocks nested more than ${this.maxNesting} deep`, line);
    try {
      return f();
    } finally {
      this.depth--;
    }
  }

  /** The whole file: statements until the end, or until the first syntax error. */
  script(): ParsedScript {
    const nodes: Node[] = [];
    try {
      for (;;) {
        this.skipNewlines();
        const tok = this.peek();
        if (tok.t === 'eof') break;
        const node = this.isReserved(tok, 'function') ? this.func() : this.command();
        const after = this.peek();
        if (after.t !== 'eof' && !this.delimiters()) this.fail(after, '";" or the end of the line');
        nodes.push(node);
      }
      return { nodes, error: null };
    } catch (e) {
      if (!(e instanceof ParseError)) throw e;
      return { nodes, error: { message: e.message, line: e.line } };
    }
  }

  /** One or more commands separated by delimiters, up to a reserved word, `}` or the end; reports a final delimiter. */
  private commands(): { list: Node[]; delimited: boolean } {
    this.skipNewlines();
    const list = [this.command()];
    for (;;) {
      if (!this.delimiters()) return { list, delimited: false };
      const tok = this.peek();
      if (tok.t === '}' || tok.t === 'eof' || this.isReserved(tok)) {
        if (this.isReserved(tok, 'if', 'for', 'while', 'until')) {
          list.push(this.command());
          continue;
        }
        return { list, delimited: true };
      }
      list.push(this.command());
    }
  }

  private command(): Node {
    const tok = this.peek();
    if (tok.t !== 'word') this.fail(tok, 'a command');
    if (this.isReserved(tok, 'if')) return this.nest(tok.line, () => this.ifCommand());
    if (this.isReserved(tok, 'for')) return this.nest(tok.line, () => this.forCommand());
    if (this.isReserved(tok, 'while', 'until')) return this.nest(tok.line, () => this.whileCommand());
    if (this.isReserved(tok)) this.fail(tok, 'a command');
    this.next();
    const words = [tok.word];
    while (this.peek().t === 'word') words.push((this.next() as { word: Word }).word);
    let block: Node[] | null = null;
    if (this.peek().t === '{') block = this.nest(tok.line, () => this.block());
    return { k: 'cmd', words, block, line: tok.line };
  }

  private block(): Node[] {
    this.next(); // '{'
    const { list } = this.commands();
    const close = this.next();
    if (close.t !== '}') this.fail(close, '"}"');
    return list;
  }

  /** After `if` or `elif`: the condition, `then`, its commands, and `fi`, `else … fi` or another `elif`. */
  private ifCommand(): Node {
    const line = this.next().line; // 'if' or 'elif'
    const cond = this.commands();
    if (!cond.delimited) this.fail(this.peek(), '";" or a new line before "then"');
    this.expectReserved('then');
    const then = this.commands();
    if (!then.delimited) this.fail(this.peek(), '";" or a new line before "fi"');
    const tok = this.peek();
    if (this.isReserved(tok, 'fi')) {
      this.next();
      return { k: 'if', cond: cond.list, then: then.list, else: null, line };
    }
    if (this.isReserved(tok, 'else')) {
      this.next();
      const otherwise = this.commands();
      if (!otherwise.delimited) this.fail(this.peek(), '";" or a new line before "fi"');
      this.expectReserved('fi');
      return { k: 'if', cond: cond.list, then: then.list, else: otherwise.list, line };
    }
    if (this.isReserved(tok, 'elif')) {
      return { k: 'if', cond: cond.list, then: then.list, else: [this.nest(tok.line, () => this.ifCommand())], line };
    }
    return this.fail(tok, '"fi", "else" or "elif"');
  }

  private forCommand(): Node {
    const line = this.next().line;
    const name = this.next();
    if (name.t !== 'word' || name.word.plain === null || !NAME.test(name.word.plain)) this.fail(name, 'a variable name');
    this.expectReserved('in');
    const words: Word[] = [];
    while (this.peek().t === 'word') words.push((this.next() as { word: Word }).word);
    if (!this.delimiters()) this.fail(this.peek(), '";" or a new line before "do"');
    this.expectReserved('do');
    const body = this.commands();
    if (!body.delimited) this.fail(this.peek(), '";" or a new line before "done"');
    this.expectReserved('done');
    return { k: 'for', name: name.word.plain!, words, body: body.list, line };
  }

  private whileCommand(): Node {
    const first = this.next() as { word: Word; line: number };
    const cond = this.commands();
    if (!cond.delimited) this.fail(this.peek(), '";" or a new line before "do"');
    this.expectReserved('do');
    const body = this.commands();
    if (!body.delimited) this.fail(this.peek(), '";" or a new line before "done"');
    this.expectReserved('done');
    return { k: 'while', until: first.word.plain === 'until', cond: cond.list, body: body.list, line: first.line };
  }

  private func(): Node {
    const line = this.next().line;
    const name = this.next();
    if (name.t !== 'word' || name.word.plain === null || !NAME.test(name.word.plain)) this.fail(name, 'a function name');
    this.skipNewlines();
    if (this.peek().t !== '{') this.fail(this.peek(), '"{"');
    const body = this.nest(line, () => this.block());
    return { k: 'function', name: name.word.plain!, body, line };
  }
}

/** Parses a GRUB script. Never throws for any input: a syntax error ends the result, reported in `error`. */
export function parseGrubScript(text: string, limits: ScriptLimits = DEFAULT_SCRIPT_LIMITS): ParsedScript {
  return new Parser(tokenizeGrubScript(text, limits.maxTokens), limits.maxNesting).script();
}
