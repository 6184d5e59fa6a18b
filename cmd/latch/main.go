// Command latch is the site tool. `latch serve` is the site service: it
// holds the site database (store/site) and answers a JSON HTTP API on a
// unix socket. Every other command is a client of that API, for facility
// admins and security teams: holders, cards, PINs, revocations, doors,
// the collected audit log and backups. The CLI never opens the database
// itself.
//
// A site starts with:
//
//	latch init --db /var/lib/latch/site.db --key /etc/latch/site.key --site hq
//	latch serve --db /var/lib/latch/site.db --key /etc/latch/site.key --socket /run/latch/latch.sock
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
// This is the first part of the site tool: it speaks no MQTT yet, so
// changes are stored but not yet sent to doors.
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
