/**
 * Exit codes, in one table. 0, 1 and 2 keep veritysetup's meanings (src/utils_tools.c: translate_errno): 1 for bad
 * parameters, 2 for a digest mismatch. A missing input keeps veritysetup's 4. veritysetup also exits 1 for a wrong
 * root hash and for an unreadable or invalid hash device; we give those their own codes so a CI gate can tell
 * "wrong root hash" and "bad input" from "bad parameters".
 */
import type { VerityErrorCode } from '../errors.js';
import type { VerifyStatus } from '../tree/verify.js';

export const EXIT = {
  OK: 0,
  /** Invalid parameters or usage (veritysetup: 1). */
  USAGE: 1,
  /** Corrupted data or hash blocks found (veritysetup: 2). */
  CORRUPT: 2,
  /** The tree does not hash to the expected root hash (veritysetup: 1). */
  ROOT_MISMATCH: 3,
  /** An input is missing, unreadable, truncated or not a verity hash device (veritysetup: 4 or 1). */
  BAD_INPUT: 4,
  /** `verify IMAGE`: the image holds no dm-verity target (not protected, as opposed to damaged or bad input). */
  NO_VERITY: 5,
  /** `verify IMAGE --trusted-cert`: a root hash the image claims is not signed by a trusted certificate. */
  UNAUTHENTICATED: 6,
  /** A bug in this tool; please report it. */
  INTERNAL: 70,
  /** Interrupted by SIGINT (128 + 2), after removing any temporary output. */
  INTERRUPTED: 130,
} as const;

export function exitCodeForError(code: VerityErrorCode): number {
  switch (code) {
    case 'E_PARAM':
    case 'E_OVERLAP':
      return EXIT.USAGE;
    case 'E_NO_FILE':
    case 'E_NO_ENTRY':
    case 'E_IO':
    case 'E_TRUNCATED':
    case 'E_BAD_SUPERBLOCK':
    case 'E_BAD_IMAGE':
    case 'E_UNSUPPORTED':
      return EXIT.BAD_INPUT;
    case 'E_INTERNAL':
      return EXIT.INTERNAL;
  }
}

export function exitCodeForStatus(status: VerifyStatus): number {
  switch (status) {
    case 'ok':
      return EXIT.OK;
    case 'corrupt':
      return EXIT.CORRUPT;
    case 'root-mismatch':
      return EXIT.ROOT_MISMATCH;
  }
}
