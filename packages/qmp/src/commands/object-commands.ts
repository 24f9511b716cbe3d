// User-creatable objects (qapi/qom.json): object-add (`iommufd`, with `fd` passed by the client)
// and object-del.

import type { QmpCommand } from '../protocol/qmp-command.js';
import { genericError } from '../protocol/qmp-error.js';
import { checkId, namedFd, descriptionOf } from './device-commands.js';
import { inClientTerms } from './passed-fd-errors.js';

export const objectAdd: QmpCommand = {
  name: 'object-add',
  args: { 'qom-type': 'str', id: 'str' },
  extraArgs: true,
  run: (args, { vmm, server, fds }) => {
    const { 'qom-type': type, id, ...props } = args;
    checkId(id);
    if (vmm.objects.has(id as string)) throw genericError(`attempt to add duplicate property '${String(id)}' to object (type 'container')`);
    const fdName = namedFd(props.fd, fds);
    const fd = fdName ? fds.named.get(fdName) : undefined;
    try {
      vmm.addObject(descriptionOf({ type, id, ...props, ...(fd !== undefined && { fd }) }));
    } catch (e) {
      throw props.fd === undefined ? e : inClientTerms(e, { subject: `${String(type)} object '${String(id)}'`, fd: fd ?? Number(props.fd), fdName });
    }
    if (fdName) {
      // An iommufd object uses a passed descriptor without owning it (QEMU's iommufd backend
      // neither closes it): the server keeps it open for the object and closes it after object-del.
      server.keepObjectFd(id as string, fd!);
      fds.named.delete(fdName);
    }
    return {};
  },
};

export const objectDel: QmpCommand = {
  name: 'object-del',
  args: { id: 'str' },
  run: async ({ id }, { vmm, server }) => {
    if (!vmm.objects.has(id as string)) throw genericError(`object '${String(id)}' not found`);
    await vmm.removeObject(id as string);
    server.releaseObjectFd(id as string);
    return {};
  },
};

export const OBJECT_COMMANDS: readonly QmpCommand[] = [objectAdd, objectDel];
