// `-object iommufd,id=<id>[,fd=<n>]` as a VMM object type.

import type { VmmObjectType } from '@vmmkit/core';
import { IommufdObject } from './iommufd-object.js';

export const iommufdObjectType: VmmObjectType = {
  type: 'iommufd',
  options: {
    fd: { kind: 'uint', doc: 'an already opened /dev/iommu fd to use instead of opening one (it stays the caller\'s)' },
  },
  create(options, { host }) {
    return new IommufdObject(options.id, host, options.fd as number | undefined);
  },
};
