// Command latchd is the door daemon: it reads cards from a PN532 reader and
// PINs from a keypad, decides against the local allowlist, drives the door
// relay, and keeps in step with the site over MQTT.
//
// On a Raspberry Pi it runs from a TOML config file naming the SPI device and
// every pin:
//
//	latchd -config /etc/latch/latchd.toml
//
// With -sim it runs the same code paths on emulated hardware, with data in
// ./latch-data, and takes commands (tap, key, open, close, rex, tamper,
// status) on standard input. On its own it runs the production site in the
// same process, a demo site with the door approved and two cards, on an
// embedded MQTT broker on 127.0.0.1; with -join FILE the door joins the site
// that `latch serve --dev` runs instead, once the site's admin approves it.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
