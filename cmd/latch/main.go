// Command latch is the site tool. `latch serve` is the site service: it
// holds the site database (store/site), runs the site's end of the MQTT
// contract (mqtt/site: each door's sealed view, sync answers, commands,
// the event collector) on the broker named by --broker, and answers a
// JSON HTTP API on a unix socket. Every other command is a client of that
// API, for facility admins and security teams: holders, cards, PINs,
// enrolment by a tap, revocations, doors (approval, groups, unlock,
// lockdown), the site key, the collected audit log and backups. The CLI
// never opens the database itself.
//
// A site starts with:
//
//	latch init --db /var/lib/latch/site.db --key /etc/latch/site.key --site hq
//	latch serve --db /var/lib/latch/site.db --key /etc/latch/site.key --socket /run/latch/latch.sock \
//	    --broker ssl://broker:8883 --broker-user site --broker-password-file /etc/latch/broker.pass
//
// and is then driven with, for example:
//
//	latch holder add alice --name "Alice Example"
//	latch card add 04A1B2C3 --holder alice --doors front,lab
//	latch pin set alice --uid 04A1B2C3
//	latch revoke --uid 04A1B2C3 --reason "lost"
//
// The commands find the service with --socket PATH, or LATCH_SOCKET, or
// /run/latch/latch.sock. --json prints JSON for scripts. Errors are one line
// on standard error; the exit code is 2 for a usage error and 1 otherwise.
//
// `latch serve --dev DIR` runs a development site in DIR with an embedded
// broker, for trying latch on one machine with simulated doors (latchd
// -sim -join DIR/join.json).
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
