/**
 * GRUB environment blocks, checked against grub-editenv (GRUB's own reader and writer of them): blocks it writes
 * parse to what it lists, blocks we write are byte for byte what it writes and list back as written, and on random
 * malformed blocks our reading equals its `list` (lib/envblk.c's quirks included). Round trips of random variables.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GRUBENV_SIGNATURE, parseGrubEnv, serializeGrubEnv } from '../../src/boot/grubenv.js';
import { VerityError } from '../../src/errors.js';
import { Rng } from '../support/rng.js';
import { findTool } from '../support/tools.js';

const EDITENV = findTool('grub-editenv', '/usr/bin/grub-editenv');
const skipReason = EDITENV ? '' : ' [SKIPPED: grub-editenv not installed (apt package grub-common)]';
const dir = mkdtempSync(join(tmpdir(), 'grubenv-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function editenv(file: string, ...args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(EDITENV!, [file, ...args], { encoding: 'latin1', env: { ...process.env, LC_ALL: 'C' } });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const enc = (s: string) => new TextEncoder().encode(s);
const listing = (entries: Array<[string, string]>) => entries.map(([n, v]) => `${n}=${v}\n`).join('');

describe('parseGrubEnv', () => {
  it('reads name=value lines after the signature, skipping # lines and padding', () => {
    const bytes = enc(`${GRUBENV_SIGNATURE}# comment\na=1\nb=x=y\n###########`);
    const b = parseGrubEnv(bytes);
    expect(b.entries).toEqual([['a', '1'], ['b', 'x=y']]);
    expect(b.vars.get('b')).toBe('x=y');
    expect(b.broken).toBe(false);
    expect(b.size).toBe(bytes.length);
  });

  it('reads an unpadded block as the Mariner kernel package writes it', () => {
    const b = parseGrubEnv(readFileSync(new URL('../fixtures/boot/mariner/boot/linux-5.15.158.2-1.cm2.cfg', import.meta.url)));
    expect(Object.fromEntries(b.vars)).toEqual({
      mariner_cmdline: 'init=/lib/systemd/systemd ro loglevel=3 no-vmw-sta crashkernel=256M',
      mariner_linux: 'vmlinuz-5.15.158.2-1.cm2',
      mariner_initrd: 'initrd.img-5.15.158.2-1.cm2',
    });
  });

  it('unescapes backslashes and escaped newlines; the last of a repeated name wins', () => {
    const b = parseGrubEnv(enc(`${GRUBENV_SIGNATURE}a=x\\\\y\nb=1\\\n2\na=z\\q\n`));
    expect(b.entries).toEqual([['a', 'x\\y'], ['b', '1\n2'], ['a', 'zq']]);
    expect(b.vars.get('a')).toBe('zq');
  });

  it('stops at an unfinished line, keeping what came before', () => {
    expect(parseGrubEnv(enc(`${GRUBENV_SIGNATURE}a=1\nb=2`))).toMatchObject({ entries: [['a', '1']], broken: true });
    expect(parseGrubEnv(enc(`${GRUBENV_SIGNATURE}a=1\nnoequals`))).toMatchObject({ entries: [['a', '1']], broken: true });
    expect(parseGrubEnv(enc(`${GRUBENV_SIGNATURE}a=1\\`))).toMatchObject({ entries: [], broken: true });
  });

  it('refuses a block without the signature (E_BAD_IMAGE), as GRUB does, even the signature alone', () => {
    for (const text of ['', '# GRUB Environment Block', GRUBENV_SIGNATURE, 'a=b\n', '# GRUB environment block\na=1\n']) {
      expect(() => parseGrubEnv(enc(text)), JSON.stringify(text)).toThrow(VerityError);
    }
    try {
      parseGrubEnv(enc('x'));
    } catch (e) {
      expect((e as VerityError).code).toBe('E_BAD_IMAGE');
    }
  });
});

describe('serializeGrubEnv', () => {
  it('pads to 1024 bytes with #, escapes backslash and newline, and round-trips', () => {
    const vars: Array<[string, string]> = [['saved_entry', 'gnulinux-x'], ['k', 'a\\b\nc'], ['empty', ''], ['eq', 'a=b']];
    const bytes = serializeGrubEnv(vars);
    expect(bytes.length).toBe(1024);
    expect(bytes[1023]).toBe(0x23);
    expect(parseGrubEnv(bytes).entries).toEqual(vars);
    expect(parseGrubEnv(serializeGrubEnv({ a: '1' }, 100)).entries).toEqual([['a', '1']]);
  });

  it('refuses names GRUB could not read back, and variables that do not fit (E_PARAM)', () => {
    for (const name of ['', '#x', 'a=b', 'a\nb']) {
      expect(() => serializeGrubEnv([[name, 'v']]), JSON.stringify(name)).toThrow(/cannot be a GRUB environment variable name/);
    }
    expect(() => serializeGrubEnv({ big: 'x'.repeat(2000) })).toThrow(/the block is 1024/);
    expect(() => serializeGrubEnv({}, 10)).toThrow(VerityError);
  });

  it('round-trips random names and values (UTF-8, backslashes, newlines, "=", "#")', () => {
    const rng = new Rng(12);
    const alphabet = ['a', 'Z', '_', '0', '=', '#', '\\', '\n', ' ', 'é', '€', '"', "'", '$'];
    for (let n = 0; n < 300; n++) {
      const vars: Array<[string, string]> = [];
      for (let k = rng.int(0, 6); k > 0; k--) {
        let name = rng.pick(['a', 'B', '_x', 'var']);
        for (let j = rng.int(0, 4); j > 0; j--) name += rng.pick(['a', '1', '_', '.', '-', ' ', '#', '\\']);
        let value = '';
        for (let j = rng.int(0, 30); j > 0; j--) value += rng.pick(alphabet);
        vars.push([name, value]);
      }
      expect(parseGrubEnv(serializeGrubEnv(vars, 4096)).entries).toEqual(vars);
    }
  });
});

describe(`against grub-editenv${skipReason}`, () => {
  it.skipIf(!EDITENV)('parses what grub-editenv writes to what it lists', () => {
    const file = join(dir, 'written');
    expect(editenv(file, 'create').status).toBe(0);
    expect(editenv(file, 'set', 'a=x\\y', 'b=line1\nline2', 'c=', 'd=é=€', 'saved_entry=gnulinux-simple-1').status).toBe(0);
    expect(editenv(file, 'set', 'a=second').status).toBe(0);
    const bytes = new Uint8Array(readFileSync(file));
    const parsed = parseGrubEnv(bytes);
    expect(bytes.length).toBe(1024);
    expect(Buffer.from(listing(parsed.entries), 'utf8').toString('latin1')).toBe(editenv(file, 'list').stdout);
    expect(Object.fromEntries(parsed.vars)).toEqual({ a: 'second', b: 'line1\nline2', c: '', d: 'é=€', saved_entry: 'gnulinux-simple-1' });
  });

  it.skipIf(!EDITENV)('writes blocks byte for byte as grub-editenv does, and grub-editenv lists them back', () => {
    const file = join(dir, 'theirs');
    const vars: Array<[string, string]> = [['a', 'x\\y'], ['b', 'l1\nl2'], ['kernelopts', 'root=UUID=1 ro quiet']];
    expect(editenv(file, 'create').status).toBe(0);
    expect(editenv(file, 'set', ...vars.map(([n, v]) => `${n}=${v}`)).status).toBe(0);
    const ours = serializeGrubEnv(vars);
    expect(Buffer.from(ours).equals(readFileSync(file))).toBe(true);
    const mine = join(dir, 'ours');
    writeFileSync(mine, ours);
    expect(editenv(mine, 'list').stdout).toBe(Buffer.from(listing(vars), 'utf8').toString('latin1'));
    // An empty block too.
    const empty = join(dir, 'empty');
    expect(editenv(empty, 'create').status).toBe(0);
    expect(Buffer.from(serializeGrubEnv([])).equals(readFileSync(empty))).toBe(true);
  });

  it.skipIf(!EDITENV)('reads 150 random malformed blocks exactly as grub-editenv lists them', () => {
    const rng = new Rng(7);
    const pieces = ['a', 'b', '=', '#', '\\', '\n', '\n', 'xy', '=v', '#pad##'];
    const file = join(dir, 'random');
    for (let n = 0; n < 150; n++) {
      let body = '';
      // At least one byte after the signature: a bare signature is refused (checked below).
      for (let k = rng.int(1, 40); k > 0; k--) body += rng.pick(pieces);
      const bytes = enc(GRUBENV_SIGNATURE + body);
      writeFileSync(file, bytes);
      const theirs = editenv(file, 'list');
      expect(theirs.status, JSON.stringify(body)).toBe(0);
      expect(listing(parseGrubEnv(bytes).entries), JSON.stringify(body)).toBe(theirs.stdout);
    }
  });

  it.skipIf(!EDITENV)('refuses what grub-editenv refuses', () => {
    const file = join(dir, 'refused');
    for (const text of [GRUBENV_SIGNATURE, '# GRUB Environment Bloc\na=1\n', 'a=1\n']) {
      writeFileSync(file, text);
      expect(editenv(file, 'list').stderr, JSON.stringify(text)).toMatch(/invalid environment block/);
      expect(() => parseGrubEnv(enc(text))).toThrow(/Not a GRUB environment block/);
    }
  });
});
