/**
 * Known-answer test an engine must pass before it hashes anything: FIPS 180 "abc" digests for every algorithm,
 * plus a salted block in both salt placements, so a broken engine or a wrong salt position fails loudly.
 */
import { fromHex, bytesEqual, toHex } from '../binary/bytes.js';
import type { HashAlgorithm } from '../format/algorithms.js';
import { VerityError } from '../errors.js';
import type { HashEngine } from './engine.js';

const ABC: Record<HashAlgorithm, string> = {
  sha1: 'a9993e364706816aba3e25717850c26c9cd0d89d',
  sha224: '23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7',
  sha256: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
  sha384: 'cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7',
  sha512:
    'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f',
};

/** SHA-256("abc") = SHA-256(salt "a" ‖ block "bc") = SHA-256(block "ab" ‖ salt "c"). */
const abc = new Uint8Array([0x61, 0x62, 0x63]);

/** Resolves if `engine` gives the known answers for `algorithm`; throws E_INTERNAL otherwise. */
export async function selfTest(engine: HashEngine, algorithm: HashAlgorithm): Promise<void> {
  const expected = fromHex(ABC[algorithm], 'known answer');
  const cases = [
    { salt: abc.subarray(0, 0), block: abc, placement: 'prefix' as const },
    { salt: abc.subarray(0, 1), block: abc.subarray(1), placement: 'prefix' as const },
    { salt: abc.subarray(2), block: abc.subarray(0, 2), placement: 'suffix' as const },
  ];
  for (const c of cases) {
    const hasher = await engine.createBlockHasher({ algorithm, salt: c.salt, saltPlacement: c.placement });
    // Two blocks at a stride with a guard byte between them: checks the stride and that nothing else is written.
    const src = new Uint8Array([...c.block, ...c.block]);
    const stride = expected.length + 1;
    const out = new Uint8Array(2 * stride).fill(0xa5);
    await hasher.hashBlocks(src, c.block.length, 2, out, 0, stride);
    const ok =
      bytesEqual(out.subarray(0, expected.length), expected) &&
      bytesEqual(out.subarray(stride, stride + expected.length), expected) &&
      out[expected.length] === 0xa5 &&
      out[2 * stride - 1] === 0xa5;
    if (!ok) {
      throw new VerityError(
        'E_INTERNAL',
        `Hash engine ${engine.name} failed its ${algorithm} known-answer test (got ${toHex(out.subarray(0, expected.length))}).`,
      );
    }
  }
}

