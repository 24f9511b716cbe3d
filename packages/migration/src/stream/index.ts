// The migration stream: its versioned record format, transports, and the RAM page path.

export * from './records.js';
export * from './migration-transport.js';
export * from './stream-writer.js';
export * from './stream-reader.js';
export * from './transport-pair.js';
export * from './socket-address.js';
export * from './socket-transport.js';
export * from './socket-connect.js';
export * from './ram-pages.js';
export * from './ram-channels.js';
export * from './ram-channel-read.js';
export { ramChannelThreadsPossible, ThreadedRamChannelSender } from './ram-channel-threads.js';
export * from './bandwidth-pacer.js';
export * from './throughput-meter.js';
