/**
 * resolveDevice (src/discovery/devices.ts): device specs from command lines against partitions identified from the
 * image. The disks come from test/support/os-images.ts (mke2fs, veritysetup, sgdisk), so every UUID and label is one a
 * real producer wrote; the ambiguous case uses a synthetic GPT.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDeviceSpec } from '../../src/boot/cmdline.js';
import { identifyPartitions, resolveDevice, type DeviceIdentity } from '../../src/discovery/devices.js';
import { readGpt } from '../../src/image/gpt.js';
import { bytesSource } from '../../src/io/source.js';
import { buildGpt, LINUX_GENERIC } from '../support/gpt-writer.js';
import { buildCustomizerDisk, osImageTools, seededUuid } from '../support/os-images.js';

const missing = osImageTools();
const SKIP = missing.length === 0 ? '' : ` [SKIPPED: needs ${missing.join(', ')}]`;
let work: string;
let devices: DeviceIdentity[];

beforeAll(async () => {
  if (SKIP) return;
  work = mkdtempSync(join(tmpdir(), 'verity-devices-'));
  const disk = buildCustomizerDisk(join(work, 'azl'), { idType: 'uuid' });
  const image = bytesSource(readFileSync(disk.raw));
  devices = await identifyPartitions(image, await readGpt(image));
}, 120_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

const resolved = (spec: string) => {
  const r = resolveDevice(parseDeviceSpec(spec), devices);
  return 'device' in r ? r.device.partition.name : r.problem;
};

describe.skipIf(SKIP !== '')(`resolveDevice on an image-customizer disk${SKIP}`, () => {
  it('identifies each partition: ext4 UUID and label, the verity superblock UUID of the hash partition', () => {
    const byName = Object.fromEntries(devices.map((d) => [d.partition.name, d]));
    expect(byName.root!.filesystem).toEqual({ type: 'ext4', uuid: seededUuid('azl-rootfs'), label: 'rootfs' });
    expect(byName.boot!.filesystem).toMatchObject({ type: 'ext4', label: 'boot' });
    expect(byName.roothash).toMatchObject({ filesystem: null, verityUuid: seededUuid('azl-verity') });
  });

  it('resolves PARTUUID (any case), PARTLABEL, UUID (filesystem or verity superblock), LABEL and their by-* links', () => {
    expect(resolved(`PARTUUID=${seededUuid('azl-part-root').toUpperCase()}`)).toBe('root');
    expect(resolved(`/dev/disk/by-partuuid/${seededUuid('azl-part-roothash')}`)).toBe('roothash');
    expect(resolved('PARTLABEL=roothash')).toBe('roothash');
    expect(resolved(`UUID=${seededUuid('azl-rootfs')}`)).toBe('root');
    expect(resolved(`UUID=${seededUuid('azl-verity')}`)).toBe('roothash');
    expect(resolved('LABEL=boot')).toBe('boot');
    expect(resolved('/dev/disk/by-label/rootfs')).toBe('root');
  });

  it('says why when nothing or a running system\'s device is named', () => {
    expect(resolved('PARTLABEL=Root')).toBe('no partition matches PARTLABEL=Root');
    expect(resolved('/dev/sda3')).toBe('/dev/sda3 names a device of the running system, which an image does not have');
  });
});

describe('resolveDevice on a synthetic GPT', () => {
  it('refuses a label two partitions share, naming both', async () => {
    const image = bytesSource(
      buildGpt({
        sectorSize: 512,
        sectors: 8192,
        partitions: [
          { type: LINUX_GENERIC, guid: '0a000000-0000-4000-8000-000000000001', first: 2048, last: 4095, name: 'rootfs' },
          { type: LINUX_GENERIC, guid: '0a000000-0000-4000-8000-000000000002', first: 4096, last: 6143, name: 'rootfs' },
        ],
      }),
    );
    const found = await identifyPartitions(image, await readGpt(image));
    const r = resolveDevice(parseDeviceSpec('PARTLABEL=rootfs'), found);
    expect(r).toEqual({ problem: expect.stringMatching(/^PARTLABEL=rootfs matches 2 partitions \(#1 "rootfs" .*; #2 "rootfs" /) });
  });
});
