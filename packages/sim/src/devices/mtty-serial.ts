// One serial port of the mtty model (Linux's samples/vfio-mdev/mtty.c): a 16550-like register
// file whose transmit loops back into a 16-byte FIFO, and its state in the byte layout mtty's
// migration stream carries (struct serial_port as x86-64 lays it out).

/** 16550 register offsets in the port's I/O BAR (include/uapi/linux/serial_reg.h). */
export const UART_RX = 0; // read; UART_TX on write
export const UART_IER = 1;
export const UART_IIR = 2; // read; UART_FCR on write
export const UART_LCR = 3;
export const UART_MCR = 4;
export const UART_LSR = 5;
export const UART_MSR = 6;
export const UART_SCR = 7;

const IER_RDI = 0x01;
const IER_THRI = 0x02;
const IER_RLSI = 0x04;
const IER_MSI = 0x08;
const IIR_NO_INT = 0x01;
const IIR_THRI = 0x02;
const IIR_RDI = 0x04;
const IIR_RLSI = 0x06;
const FCR_ENABLE_FIFO = 0x01;
const FCR_CLEAR = 0x06; // CLEAR_RCVR | CLEAR_XMIT
const LCR_DLAB = 0x80;
const MCR_DTR = 0x01;
const MCR_RTS = 0x02;
const MCR_OUT2 = 0x08;
const MCR_AFE = 0x20;
const LSR_DR = 0x01;
const LSR_OE = 0x02;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
const MSR_CTS_DCTS = 0x11;
const MSR_DSR_DDSR_DCD = 0xa2;

const FIFO_SIZE = 16;
/** sizeof(struct serial_port): uart_reg[8], fifo[16], head, tail, count, dlab, overrun, pad, divisor (u16), fcr, max_fifo_size, intr_trigger_level, pad. */
export const MTTY_PORT_STATE_SIZE = 36;

/** A port's registers and loopback FIFO, as mtty's handle_bar_read/handle_bar_write treat them. */
export class MttyPort {
  readonly #reg = new Uint8Array(8);
  readonly #fifo = new Uint8Array(FIFO_SIZE);
  #head = 0;
  #tail = 0;
  #count = 0;
  #dlab = false;
  #overrun = false;
  #divisor = 0;
  #fcr = 0;
  // mtty_init_dev sets the FIFO size; the trigger level stays 0 until the first FCR write.
  #maxFifo = FIFO_SIZE;
  #trigger = 0;

  /** @param interrupt raise the device's interrupt (mtty_trigger_interrupt). */
  constructor(private readonly interrupt: () => void) {}

  /** A byte read at `offset` (0..7). Reading RX consumes a FIFO byte; an empty FIFO reads 0 (mtty leaves it unset). */
  read(offset: number): number {
    switch (offset) {
      case UART_RX: return this.#readRx();
      case UART_IER: return this.#dlab ? this.#divisor >> 8 : this.#reg[UART_IER]! & 0x0f;
      case UART_IIR: return this.#iir();
      case UART_LCR: case UART_MCR: case UART_SCR: return this.#reg[offset]!;
      case UART_LSR:
        return (this.#empty ? LSR_TEMT | LSR_THRE : LSR_DR) | (this.#overrun ? LSR_OE : 0);
      case UART_MSR: {
        const cts = !(this.#reg[UART_MCR]! & MCR_AFE) || this.#count < this.#maxFifo;
        return MSR_DSR_DDSR_DCD | (cts ? MSR_CTS_DCTS : 0);
      }
      default: return 0;
    }
  }

  /** A byte written at `offset` (0..7). */
  write(offset: number, data: number): void {
    switch (offset) {
      case UART_RX: return this.#writeTx(data);
      case UART_IER:
        // With DLAB set this is the divisor's high byte; mtty ORs the bytes in, never clearing.
        if (this.#dlab) this.#divisor |= data << 8;
        else {
          this.#reg[UART_IER] = data;
          if (data & IER_THRI && this.#empty) this.interrupt();
        }
        return;
      case UART_IIR: return this.#writeFcr(data);
      case UART_LCR:
        this.#dlab = (data & LCR_DLAB) !== 0;
        if (this.#dlab) this.#divisor = 0;
        this.#reg[UART_LCR] = data;
        return;
      case UART_MCR:
        this.#reg[UART_MCR] = data;
        if (this.#reg[UART_IER]! & IER_MSI && data & MCR_OUT2) this.interrupt();
        if (this.#reg[UART_IER]! & IER_MSI && data & (MCR_RTS | MCR_DTR)) this.interrupt();
        return;
      case UART_SCR:
        this.#reg[UART_SCR] = data;
        return;
      default: // LSR and MSR are read-only
    }
  }

  /** The port's state in struct serial_port's layout (mtty_save_state copies it as it is). */
  save(): Uint8Array {
    const out = new Uint8Array(MTTY_PORT_STATE_SIZE);
    out.set(this.#reg, 0);
    out.set(this.#fifo, 8);
    out.set([this.#head, this.#tail, this.#count, Number(this.#dlab), Number(this.#overrun)], 24);
    new DataView(out.buffer).setUint16(30, this.#divisor, true);
    out.set([this.#fcr, this.#maxFifo, this.#trigger], 32);
    return out;
  }

  /**
   * Take a state saved by `save`. mtty_load_state copies it without checking it; the FIFO
   * indexes are masked here so that a corrupt stream cannot point past the FIFO.
   */
  load(state: Uint8Array): void {
    this.#reg.set(state.subarray(0, 8));
    this.#fifo.set(state.subarray(8, 24));
    [this.#head, this.#tail, this.#count] = [state[24]! & (FIFO_SIZE - 1), state[25]! & (FIFO_SIZE - 1), state[26]!];
    this.#dlab = state[27] !== 0;
    this.#overrun = state[28] !== 0;
    this.#divisor = new DataView(state.buffer, state.byteOffset).getUint16(30, true);
    [this.#fcr, this.#maxFifo, this.#trigger] = [state[32]!, state[33]!, state[34]!];
  }

  get #empty(): boolean {
    return this.#head === this.#tail;
  }

  #readRx(): number {
    if (this.#dlab) return this.#divisor & 0xff;
    let value = 0;
    if (!this.#empty) {
      value = this.#fifo[this.#tail]!;
      this.#count--;
      this.#tail = (this.#tail + 1) & (FIFO_SIZE - 1);
    }
    if (this.#empty && this.#reg[UART_IER]! & IER_THRI) this.interrupt();
    return value;
  }

  #writeTx(data: number): void {
    if (this.#dlab) {
      this.#divisor |= data;
      return;
    }
    if (this.#count < this.#maxFifo) {
      this.#fifo[this.#head] = data;
      this.#count++;
      this.#head = (this.#head + 1) & (FIFO_SIZE - 1);
      this.#overrun = false;
      if (this.#reg[UART_IER]! & IER_RDI && this.#count === this.#trigger) this.interrupt();
    } else {
      this.#overrun = true;
      if (this.#reg[UART_IER]! & IER_RLSI) this.interrupt();
    }
  }

  #writeFcr(data: number): void {
    this.#fcr = data;
    if (data & FCR_CLEAR) this.#head = this.#tail = this.#count = 0;
    // mtty computes a trigger level from the FCR bits, then always uses 1 (it has no timeout timer).
    this.#trigger = 1;
    this.#maxFifo = data & FCR_ENABLE_FIFO ? FIFO_SIZE : 1;
  }

  /** IIR: mtty ORs the pending causes together (not a priority encoding) and sets bits 6-7. */
  #iir(): number {
    const ier = this.#reg[UART_IER]!;
    let iir = 0;
    if (ier & IER_RLSI && this.#overrun) iir |= IIR_RLSI;
    if (ier & IER_RDI && this.#count >= this.#trigger) iir |= IIR_RDI;
    if (ier & IER_THRI && this.#empty) iir |= IIR_THRI;
    // The modem status cause is UART_IIR_MSI, 0: it never shows.
    return (iir || IIR_NO_INT) | 0xc0;
  }
}
