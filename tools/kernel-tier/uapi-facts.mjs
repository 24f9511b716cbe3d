// uapi-facts.mjs SRC [OUT]: the uAPI facts (constants, struct sizes, member offsets) of a Linux source
// tree, measured by compiling a probe against its <linux/iommufd.h>, <linux/vfio.h> and the iommufd
// selftest header (the host's libc headers for the rest). Writes the JSON that
// packages/core/test/uapi-abi.test.ts checks core/src/uapi against, one file per kernel series.
//
//   node tools/kernel-tier/uapi-facts.mjs ~/.cache/vmmkit-kernel-tier/kernel-build/src \
//     packages/core/test/fixtures/linux-uapi-7.2.json
//
// Which names are measured: those of linux-uapi-6.12.json (generated from linux-libc-dev 6.12), the
// selftest facts below, and what later series add (ADDED); a name a series lacks is left out.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PROJECT = join(dirname(fileURLToPath(import.meta.url)), '../..');
const BASE = join(PROJECT, 'packages/core/test/fixtures/linux-uapi-6.12.json');

/** iommufd_test.h (drivers/iommu/iommufd): the mock's facts, in every series that has them. */
const SELFTEST = {
  constants: [
    'IOMMU_TEST_CMD', 'IOMMU_TEST_OP_ADD_RESERVED', 'IOMMU_TEST_OP_MOCK_DOMAIN', 'IOMMU_TEST_OP_MD_CHECK_MAP',
    'IOMMU_TEST_OP_MD_CHECK_REFS', 'IOMMU_TEST_OP_CREATE_ACCESS', 'IOMMU_TEST_OP_DESTROY_ACCESS_PAGES',
    'IOMMU_TEST_OP_ACCESS_PAGES', 'IOMMU_TEST_OP_ACCESS_RW', 'IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT',
    'IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE', 'IOMMU_TEST_OP_ACCESS_REPLACE_IOAS', 'IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS',
    'IOMMU_TEST_OP_DIRTY', 'IOMMU_TEST_OP_MD_CHECK_IOTLB', 'IOMMU_TEST_OP_TRIGGER_IOPF', 'MOCK_APERTURE_START',
    'MOCK_APERTURE_LAST', 'MOCK_FLAGS_DEVICE_NO_DIRTY', 'IOMMU_HW_INFO_TYPE_SELFTEST', 'IOMMU_HW_INFO_SELFTEST_REGVAL',
    'IOMMU_HWPT_DATA_SELFTEST',
  ],
  structs: {
    iommu_test_hw_info: ['flags', 'test_reg'],
    iommu_test_cmd: [
      'size', 'op', 'id', '__reserved', 'add_reserved', 'mock_domain', 'mock_domain_flags', 'mock_domain_replace',
      'check_map', 'memory_limit', 'dirty', 'last',
    ],
  },
};

/** What a series adds to the names above (later series keep them unless listed in REMOVED). */
const ADDED = {
  '6.12': { constants: ['MOCK_FLAGS_DEVICE_HUGE_IOVA'], structs: { iommu_hwpt_selftest: ['iotlb'] } },
  '7.2': {
    constants: [
      'IOMMU_HWPT_ALLOC_PASID', 'IOMMU_HW_INFO_TYPE_DEFAULT', 'IOMMU_HW_CAP_PCI_PASID_EXEC',
      'IOMMU_HW_CAP_PCI_PASID_PRIV', 'IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED', 'IOMMU_HW_INFO_FLAG_INPUT_TYPE',
      'VFIO_DEVICE_BIND_FLAG_TOKEN', 'VFIO_DEVICE_ATTACH_PASID', 'VFIO_DEVICE_DETACH_PASID', 'VFIO_PRECOPY_INFO_REINIT',
      'VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2', 'MOCK_FLAGS_DEVICE_PASID', 'MOCK_PASID_WIDTH', 'MOCK_PAGE_SIZE',
      'MOCK_HUGE_PAGE_SIZE', 'MOCK_IOMMUPT_DEFAULT', 'MOCK_IOMMUPT_HUGE',
    ],
    structs: {
      vfio_device_bind_iommufd: ['argsz', 'flags', 'iommufd', 'out_devid', 'token_uuid_ptr'],
      vfio_device_attach_iommufd_pt: ['argsz', 'flags', 'pt_id', 'pasid'],
      vfio_device_detach_iommufd_pt: ['argsz', 'flags', 'pasid'],
      iommu_hwpt_selftest: ['iotlb', 'pagetable_type'],
      iommu_hw_info: [
        'size', 'flags', 'dev_id', 'data_len', 'data_uptr', 'in_data_type', 'out_data_type', 'out_max_pasid_log2',
        '__reserved', 'out_capabilities',
      ],
    },
  },
};
const REMOVED = { '7.2': { constants: ['MOCK_FLAGS_DEVICE_HUGE_IOVA'] } };
const SERIES = ['6.12', '7.2'];

/** The series of a source tree, from its Makefile: "7.2". */
function seriesOf(src) {
  const make = readFileSync(join(src, 'Makefile'), 'utf8');
  const get = (key) => make.match(new RegExp(`^${key} = (\\d+)`, 'm'))?.[1];
  return `${get('VERSION')}.${get('PATCHLEVEL')}`;
}

/** The names to measure for a series: constants, and per struct its members (size 0 marks a flexible array). */
function namesFor(series) {
  const base = JSON.parse(readFileSync(BASE, 'utf8'));
  const constants = new Set([...Object.keys(base.constants), ...SELFTEST.constants]);
  const structs = new Map(Object.entries(base.structs).map(([s, f]) => [s, Object.entries(f.fields).map(([n, [, size]]) => ({ n, flex: size === 0 }))]));
  for (const [s, fields] of Object.entries(SELFTEST.structs)) structs.set(s, fields.map((n) => ({ n, flex: false })));
  for (const v of SERIES.slice(0, SERIES.indexOf(series) + 1)) {
    for (const c of ADDED[v]?.constants ?? []) constants.add(c);
    for (const c of REMOVED[v]?.constants ?? []) constants.delete(c);
    for (const [s, fields] of Object.entries(ADDED[v]?.structs ?? {})) {
      const flex = new Set((structs.get(s) ?? []).filter((f) => f.flex).map((f) => f.n));
      structs.set(s, fields.map((n) => ({ n, flex: flex.has(n) })));
    }
  }
  return { constants: [...constants], structs };
}

/**
 * Copy the headers the probe includes. Of what `make headers_install` strips or a newer
 * <linux/stddef.h> defines, only `__user` and `__counted_by` occur in them: the compiler defines
 * both away.
 */
function installHeaders(src, dir) {
  mkdirSync(join(dir, 'linux'));
  for (const h of ['iommufd.h', 'vfio.h']) copyFileSync(join(src, 'include/uapi/linux', h), join(dir, 'linux', h));
  copyFileSync(join(src, 'drivers/iommu/iommufd/iommufd_test.h'), join(dir, 'iommufd_test.h'));
}

/** The probe: prints one line per fact, "c NAME VALUE" or "f STRUCT MEMBER OFFSET SIZE" or "s STRUCT SIZE". */
function probeSource({ constants, structs }) {
  const lines = ['#include <stdio.h>', '#include <stddef.h>', '#include <linux/iommufd.h>', '#include <linux/vfio.h>', '#include "iommufd_test.h"', 'int main(void) {'];
  for (const c of constants) lines.push(`  printf("c ${c} %lld\\n", (long long)(${c}));`);
  for (const [s, fields] of structs) {
    lines.push(`  printf("s ${s} %zu\\n", sizeof(struct ${s}));`);
    for (const { n, flex } of fields) {
      const size = flex ? '(size_t)0' : `sizeof(((struct ${s} *)0)->${n})`;
      lines.push(`  printf("f ${s} ${n} %zu %zu\\n", offsetof(struct ${s}, ${n}), ${size});`);
    }
  }
  lines.push('  return 0;', '}');
  return lines.join('\n');
}

/** The JSON laid out as the 6.12 facts always were: a constant per line, a struct per line. */
function format(facts) {
  const one = ({ size, fields }) =>
    `{ "size": ${size}, "fields": { ${Object.entries(fields).map(([k, [o, n]]) => `${JSON.stringify(k)}: [${o}, ${n}]`).join(', ')} } }`;
  const block = (obj, item) => Object.entries(obj).map(([k, v]) => `    ${JSON.stringify(k)}: ${item(v)}`).join(',\n');
  return [
    '{',
    `  "source": ${JSON.stringify(facts.source)},`,
    `  "fields_are": ${JSON.stringify(facts.fields_are)},`,
    '  "constants": {',
    block(facts.constants, (v) => String(v)),
    '  },',
    '  "structs": {',
    block(facts.structs, one),
    '  }',
    '}',
    '',
  ].join('\n');
}

function main(src, out) {
  if (!src) throw new Error('usage: uapi-facts.mjs KERNEL_SOURCE_TREE [OUT.json]');
  const series = seriesOf(src);
  if (!SERIES.includes(series)) throw new Error(`uapi-facts: no name list for Linux ${series} (have ${SERIES.join(', ')})`);
  const dir = mkdtempSync(join(tmpdir(), 'uapi-facts-'));
  try {
    installHeaders(src, dir);
    writeFileSync(join(dir, 'probe.c'), probeSource(namesFor(series)));
    execFileSync('gcc', ['-std=gnu11', '-Wall', '-D__user=', '-D__counted_by(m)=', '-I', dir, '-o', join(dir, 'probe'), join(dir, 'probe.c')], { stdio: ['ignore', 'inherit', 'inherit'] });
    const facts = { source: `Linux ${series} uAPI headers <linux/iommufd.h> <linux/vfio.h> and drivers/iommu/iommufd/iommufd_test.h`, fields_are: '[offset, size] in bytes', constants: {}, structs: {} };
    for (const line of execFileSync(join(dir, 'probe'), { encoding: 'utf8' }).trim().split('\n')) {
      const [kind, a, b, c, d] = line.split(' ');
      if (kind === 'c') facts.constants[a] = Number(b);
      else if (kind === 's') facts.structs[a] = { size: Number(b), fields: {} };
      else facts.structs[a].fields[b] = [Number(c), Number(d)];
    }
    const json = format(facts);
    if (out) writeFileSync(out, json);
    else process.stdout.write(json);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main(process.argv[2], process.argv[3]);
