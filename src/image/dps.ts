/**
 * Partition type GUIDs of the UAPI Discoverable Partitions Specification (DPS, "Defined Partition Type UUIDs"), with
 * the names systemd gives them (`systemd-repart` Type=, `systemd-dissect`): `root-x86-64`, `root-x86-64-verity`,
 * `usr-arm64-verity-sig`, `esp`, …
 */

export type DpsArchitecture = 'x86-64' | 'arm64';

/** What a partition holds. The `-verity` roles carry a superblock and hash tree, `-verity-sig` a signed root hash. */
export type DpsRole =
  | 'root'
  | 'root-verity'
  | 'root-verity-sig'
  | 'usr'
  | 'usr-verity'
  | 'usr-verity-sig'
  | 'esp'
  | 'xbootldr'
  | 'var'
  | 'swap'
  | 'home'
  | 'linux-generic';

export interface DpsType {
  /** `root-x86-64`, `usr-arm64-verity`, `esp`: the role, then the architecture, then the verity suffix. */
  name: string;
  /** Lower-case textual GUID. */
  guid: string;
  role: DpsRole;
  /** null for the architecture-independent types. */
  architecture: DpsArchitecture | null;
}

type ArchitectureRole = 'root' | 'root-verity' | 'root-verity-sig' | 'usr' | 'usr-verity' | 'usr-verity-sig';

/** Per-architecture GUIDs, in the order of the specification's table rows. */
const PER_ARCHITECTURE: Record<DpsArchitecture, Record<ArchitectureRole, string>> = {
  'x86-64': {
    root: '4f68bce3-e8cd-4db1-96e7-fbcaf984b709',
    'root-verity': '2c7357ed-ebd2-46d9-aec1-23d437ec2bf5',
    'root-verity-sig': '41092b05-9fc8-4523-994f-2def0408b176',
    usr: '8484680c-9521-48c6-9c11-b0720656f69e',
    'usr-verity': '77ff5f63-e7b6-4633-acf4-1565b864c0e6',
    'usr-verity-sig': 'e7bb33fb-06cf-4e81-8273-e543b413e2e2',
  },
  arm64: {
    root: 'b921b045-1df0-41c3-af44-4c6f280d3fae',
    'root-verity': 'df3300ce-d69f-4c92-978c-9bfb0f38d820',
    'root-verity-sig': '6db69de6-29f4-4758-a7a5-962190f00ce3',
    usr: 'b0e01050-ee5f-4390-949a-9101b17104e9',
    'usr-verity': '6e11a4e7-fbca-4ded-b9e9-e1a512bb664e',
    'usr-verity-sig': 'c23ce4ff-44bd-4b00-b2d4-b41b3419e02a',
  },
};

const INDEPENDENT: Record<'esp' | 'xbootldr' | 'var' | 'swap' | 'home' | 'linux-generic', string> = {
  esp: 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b',
  xbootldr: 'bc13c2ff-59e6-4262-a352-b275fd6f7172',
  var: '4d21b016-b534-45c2-a9fb-5c16e091fd2d',
  swap: '0657fd6d-a4ab-43c4-84e5-0933c84b4f4f',
  home: '933ac7e1-2eb4-4f13-b844-0e14e2aef915',
  // DPS lists it with "No automatic mounting": a plain Linux data partition, never discovered on its own.
  'linux-generic': '0fc63daf-8483-4772-8e79-3d69d8477de4',
};

/** `root-verity` on x86-64 is named `root-x86-64-verity`: the architecture goes after the first word. */
function archName(role: string, architecture: DpsArchitecture): string {
  const [head, ...rest] = role.split('-');
  return [head, architecture, ...rest].join('-');
}

export const DPS_TYPES: readonly DpsType[] = [
  ...(Object.keys(PER_ARCHITECTURE) as DpsArchitecture[]).flatMap((architecture) =>
    Object.entries(PER_ARCHITECTURE[architecture]).map(([role, guid]) => ({
      name: archName(role, architecture),
      guid,
      role: role as DpsRole,
      architecture,
    })),
  ),
  ...Object.entries(INDEPENDENT).map(([role, guid]) => ({ name: role, guid, role: role as DpsRole, architecture: null })),
];

const BY_GUID = new Map(DPS_TYPES.map((t) => [t.guid, t]));
const BY_NAME = new Map(DPS_TYPES.map((t) => [t.name, t]));

/** The DPS type of a type GUID (either case), or undefined when DPS does not define it. */
export function dpsTypeByGuid(guid: string): DpsType | undefined {
  return BY_GUID.get(guid.toLowerCase());
}

/** The DPS type of a name such as `root-x86-64-verity`, or undefined. */
export function dpsTypeByName(name: string): DpsType | undefined {
  return BY_NAME.get(name);
}

/** The DPS type with this role and architecture (null for the architecture-independent ones), or undefined. */
export function dpsType(role: DpsRole, architecture: DpsArchitecture | null): DpsType | undefined {
  return DPS_TYPES.find((t) => t.role === role && t.architecture === architecture);
}
