// Package pn532 drives an NXP PN532 NFC controller over SPI to read
// ISO/IEC 14443 type A cards: MIFARE Classic, NTAG, DESFire, and the
// random IDs of phones.
//
// The reference is the PN532 User Manual, UM0701-02 Rev. 02 (firmware
// v1.6, PN532/C106): frames in §6.2, the SPI interface in §6.2.5, the
// commands in chapter 7. The application note AN10609 describes the
// low-battery mode the chip starts in.
//
// # Wiring
//
// Set the board's interface switches to SPI (on the common red and blue
// boards: SEL0/I0 low, SEL1/I1 high) and wire it to the Raspberry Pi's
// SPI0 with 3.3 V logic:
//
//	PN532   Pi header
//	VCC     pin 1  (3.3 V)
//	GND     pin 6
//	SCK     pin 23 (GPIO11, SPI0 SCLK)
//	MISO    pin 21 (GPIO9,  SPI0 MISO)
//	MOSI    pin 19 (GPIO10, SPI0 MOSI)
//	SS      pin 24 (GPIO8,  SPI0 CE0)  → port "SPI0.0"
//	RSTPDN  any GPIO, e.g. pin 22 (GPIO25): Opts.Reset, optional
//	IRQ     any GPIO, e.g. pin 18 (GPIO24): Opts.IRQ, optional
//
// RSTPDN is the chip's reset input, labelled RSTPD_N or RST on some
// boards; RSTO is an output and must not be driven. hack/pn532.md in the
// repository has the switch settings of common boards and a smoke test.
//
// The PN532 shifts bits LSB first and the Pi's SPI controllers cannot, so
// by default the driver reverses the bits of every byte itself.
//
// # Behaviour
//
// NewSPI wakes the chip, drops any answer a previous host left in it,
// configures it and checks its firmware; it says which of "nothing on the
// bus", "not a PN532" and "no answer" went wrong. Each command goes
// through one exchange: frame, ACK, response, with the frame sent again
// when no ACK comes, damaged responses asked for again with NACK, and
// commands that run late aborted with an ACK frame. After repeated
// failures the next call re-initialises the chip, pulsing its reset pin
// when there is one. Every wait honours its context.
//
// The bus carries no more than the protocol needs. A response is read
// whole in one transaction sized from the last answer to the same
// command (InListPassiveTarget at least at a 7-byte-UID card's size, so
// that a card after an empty field costs no extra transaction); when it
// is longer, the rest follows in a continuation read, in
// which the chip shifts out the next byte of the frame while it receives
// the operation byte (as recorded traces of the chip show), so no byte is
// read twice. The field is switched off
// only when a card may be selected. With a chip that is busy for one
// status read before the ACK and two before the answer, a Poll that reads
// a card with a 7-byte UID takes 52 bytes in 8 transactions, whether the
// Poll before found the card or an empty field; an empty Poll takes as
// many transactions, 12 of its bytes padding (BenchmarkPoll).
//
// Tracker turns polls into one Presented event per card and one Removed
// when it has left, and reports the reader's health as Fault and
// Recovered. Without an IRQ line it polls every Opts.PollPeriod; with
// one it hands the wait to the chip (WaitCard: InListPassiveTarget with
// unlimited activation retries) and sleeps on the IRQ edge, so a card is
// seen once the RF has activated it and the bus is silent while no card
// is there. On the emulator with 3 ms of RF time (BenchmarkTapLatency, on
// testing/synctest's fake clock), a tap is seen after 3 ms at the median
// and the 99th percentile with the IRQ line, and after 53 ms (median) and
// 104 ms (99th percentile) with the default 100 ms poll period.
//
// The package pn532test is a PN532 emulator at the byte level, for tests
// and for running without a reader.
package pn532
