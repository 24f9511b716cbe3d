// Serving a model on a socket path: listen, hand each connection to the server (one at a time),
// and on close stop listening and remove the path.

import { SocketListener } from '@vmmkit/core/vfio-user';
import { VfioUserServer, type VfioUserServerOptions } from './vfio-user-server.js';

/** A server listening on a socket path. */
export interface SocketServer {
  readonly server: VfioUserServer;
  readonly path: string;
  /** Stop listening, remove the path, end the session and release the device. */
  close(): Promise<void>;
}

/** Listen at `path` and serve `options.model` to whoever connects. */
export function serveSocket(path: string, options: VfioUserServerOptions): SocketServer {
  const server = new VfioUserServer(options);
  let listener: SocketListener;
  try {
    listener = SocketListener.listen(path, (transport) => server.serve(transport));
  } catch (e) {
    void server.close();
    throw e;
  }
  return {
    server, path,
    close: async () => {
      listener.close();
      await server.close();
    },
  };
}
