// `-object iommufd,id=<id>[,fd=<n>]` as a VMM object type.

import type { OptionSchema, VmmObjectType } from '@vmmkit/core';
import { IommufdObject } from './iommufd-object.js';
import { checkPassedIommuFd } from './passed-iommu-fd.js';

const IOMMUFD_OPTIONS = {
  fd: { kind: 'uint', doc: 'an already opened /dev/iommu fd to use instead of opening one (it stays the caller\'s)' },
} as const satisfies OptionSchema;

export const iommufdObjectType: VmmObjectType<typeof IOMMUFD_OPTIONS> = {
  type: 'iommufd',
  options: IOMMUFD_OPTIONS,
  create(options, { host }) {
    if (options.fd !== undefined) checkPassedIommuFd(host, options.fd, options.id);
    return new IommufdObject(options.id, host, options.fd);
  },
};
