package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// usageError is a mistake on the command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usagef returns a usageError.
func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// env is what a command runs with: the process's streams and environment,
// passed in so that tests run commands in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string // os.Getenv
}

// command is one `latch` command.
type command struct {
	name  string // as typed, e.g. "holder add"
	usage string // the arguments, for the usage text
	help  string // one line
	run   func(ctx context.Context, e *env, args []string) error
}

// commands lists every command, in the order the usage text shows them.
func commands() []command {
	return []command{
		{"init", "--db PATH --key PATH --site ID [--kid KID]", "create the site database and the site signing key", cmdInit},
		{"serve", "--db PATH --key PATH [--socket PATH] [--broker URL ...]", "run the site service: the API on a unix socket, the doors over MQTT", cmdServe},
		{"holder add", "ID [--name NAME]", "add a holder", cmdHolderAdd},
		{"holder list", "", "list the holders", cmdHolderList},
		{"holder show", "ID", "show a holder and their cards", cmdHolderShow},
		{"holder remove", "ID", "remove a holder who has no cards", cmdHolderRemove},
		{"card add", "UID --holder H [--doors D,G] [--from T] [--until T] [--schedule S] [--holidays D,D] [--card-only] ...", "add a card (UID in hex)", cmdCardAdd},
		{"card set", "UID [--doors D,G] [--from T] [--until T] [--schedule S] [--holidays D,D] [--card-only] ...", "change a card's doors, validity, schedule or switches", cmdCardSet},
		{"card list", "", "list the cards", cmdCardList},
		{"card show", "UID", "show a card", cmdCardShow},
		{"card remove", "UID", "remove a card", cmdCardRemove},
		{"enroll", "--door D [--holder H] [--replace OLDUID]", "add the next unknown card tapped at a door; --replace a lost card with it", cmdEnroll},
		{"pin set", "HOLDER --uid UID", "set a card's PIN (prompted, or one line on standard input)", cmdPINSet},
		{"revoke", "--uid UID|--holder H --reason R [--wait]", "revoke a card or a holder; --wait until the doors applied it", cmdRevoke},
		{"reinstate", "--uid UID|--holder H [--reason R]", "lift a revocation", cmdReinstate},
		{"door list", "", "list the doors: online, applied, latest", cmdDoorList},
		{"door show", "DOOR", "show a door", cmdDoorShow},
		{"door approve", "DOOR [--fingerprint FP]", "approve the identity a door announced, by its fingerprint", cmdDoorApprove},
		{"door unapprove", "DOOR", "withdraw a door's approval: its events and requests are refused", cmdDoorUnapprove},
		{"door groups", "DOOR G1,G2|-", "set the door groups a door is in", cmdDoorGroups},
		{"door unlock", "DOOR [--for 10s]", "unlock a door for a while", cmdDoorUnlock},
		{"door lockdown", "DOOR|--all on|off", "put doors in lockdown or take them out", cmdDoorLockdown},
		{"keys rotate", "[--kid KID] [--retire-after 1h]", "rotate the site signing key; doors learn the new one from the old", cmdKeysRotate},
		{"audit query", "[--door D] [--holder H] [--uid U] [--type T] [--reason R] [--from T] [--to T] [--limit N]", "query the collected events", cmdAuditQuery},
		{"audit findings", "[--after ID] [--limit N]", "what the collector found wrong in what doors sent: gaps, chain breaks, conflicts, rewrites", cmdAuditFindings},
		{"audit verify", "[--door D]", "verify each door's stored hash chain", cmdAuditVerify},
		{"audit tail", "[-f] [--door D] [-n N]", "print the last N collected events (default 20) in the order they were stored; -f follows new ones", cmdAuditTail},
		{"audit actions", "[--user U] [--limit N]", "what was done through the console and to its accounts: who, from where, when, how it ended", cmdAuditActions},
		{"audit changes", "[--who U] [--target T] [--from T] [--to T] [--csv]", "the change log: every change of access, who made it, from where, the record before and after", cmdAuditChanges},
		{"audit note", "SEQ TEXT", "add a note on a change-log entry (an entry of its own)", cmdAuditNote},
		{"audit verify-evidence", "FILE [--site-key KID=BASE64 ...] [--key FILE]", "verify a review's evidence file offline: OK, or which part fails", cmdAuditVerifyEvidence},
		{"review start", "--group G --owner ACCOUNT [--due DATE]", "start the review of who can open a door group's doors", cmdReviewStart},
		{"review list", "", "list the reviews", cmdReviewList},
		{"review show", "ID", "show a review: every holder, the decision, the comment", cmdReviewShow},
		{"review decide", "ID --holder H --keep|--remove --comment TEXT", "keep or remove a holder; a removal withdraws their cards from the group now", cmdReviewDecide},
		{"review complete", "ID", "complete a review: it is frozen, and recorded with every decision", cmdReviewComplete},
		{"review export", "ID --format csv|json -o FILE", "write a completed review's evidence file, signed by the site", cmdReviewExport},
		{"audit export", "--format csv|jsonl [--out FILE] [--door D] [--holder H] [--uid U] [--type T] [--reason R] [--from T] [--to T]", "write every selected event", cmdAuditExport},
		{"access who", "--door D [--at T] [--mode M] [--tz Z] [--csv]", "every card that can open a door, how, and its last use there", cmdAccessWho},
		{"access what", "--holder H [--at T] [--mode M] [--tz Z] [--csv]", "every door a holder's cards can open, how, and the last use of each", cmdAccessWhat},
		{"access explain", "--holder H|--uid U --door D [--at T] [--pin-entered]", "the decision the door would make about a card, and the rule that decides it", cmdAccessExplain},
		{"access unused", "[--days N] [--csv]", "cards not used for N days (default 90), or never used and enrolled before", cmdAccessUnused},
		{"user add", "NAME --role admin|operator|auditor", "add a web console account (password prompted, or one line of standard input)", cmdUserAdd},
		{"user list", "", "list the web console accounts", cmdUserList},
		{"user passwd", "NAME", "set a console account's password (its sessions end)", cmdUserPasswd},
		{"user role", "NAME admin|operator|auditor", "change a console account's role (its sessions end)", cmdUserRole},
		{"user remove", "NAME", "remove a console account", cmdUserRemove},
		{"token create", "NAME --role admin|operator|auditor [--expires 90d]", "make an API token for scripts and identity providers; it is printed once", cmdTokenCreate},
		{"token list", "", "list the API tokens, revoked and expired ones too", cmdTokenList},
		{"token revoke", "NAME", "revoke an API token: it is refused from now on", cmdTokenRevoke},
		{"import", "FILE [--dry-run] [--sync]", "add and change holders and cards from a CSV (docs/integrations.md); shows the diff first", cmdImport},
		{"export", "--csv [--out FILE]", "write every holder and card as a CSV that imports back to no change", cmdExport},
		{"alarm list", "[--open]", "list the alarms, newest first: kind, door, priority, state, repeats", cmdAlarmList},
		{"alarm ack", "ID", "acknowledge an alarm", alarmCmd("ack", "ack", nil, func([]string, string) alarmReq { return alarmReq{} })},
		{"alarm assign", "ID ACCOUNT", "assign an alarm to someone", alarmCmd("assign", "assign", []string{"ACCOUNT"}, func(p []string, _ string) alarmReq { return alarmReq{Account: p[0]} })},
		{"alarm note", "ID TEXT", "add a note on an alarm", alarmCmd("note", "notes", []string{"TEXT"}, func(p []string, _ string) alarmReq { return alarmReq{Text: p[0]} })},
		{"alarm resolve", "ID [--note TEXT]", "resolve an alarm", alarmCmd("resolve", "resolve", nil, func(_ []string, t string) alarmReq { return alarmReq{Text: t} })},
		{"alarm snooze", "ID --for 15m [--note TEXT]", "quiet an open alarm for a while (at most 24h; --for 0 ends it): repeats count but notify no one", cmdAlarmSnooze},
		{"visitor add", "NAME --host HOST --until T --doors D,G (--uid UID | --enroll-door D) [--from T] [--uses N] [--name N]", "let a visitor in for a window: a card-only card valid then, typed or tapped", cmdVisitorAdd},
		{"visitor list", "", "list the visitors: host, window, uses, first badge-in, end", cmdVisitorList},
		{"visitor end", "NAME", "end a visit now: its card is revoked", cmdVisitorEnd},
		{"notify rules", "", "list the notification rules: the configuration file's and those added here, how each stands", cmdNotifyRules},
		{"notify rule add", "--name N --channel C [--events E,E] [--alarms A,A] [--actions A --roles R] [--doors D,D] [--days D,D] [--hours HH:MM-HH:MM] [--tz Z] [--open-for 5m]", "add a notification rule to a channel of latch serve's configuration", cmdNotifyRuleAdd},
		{"notify rule remove", "NAME", "remove a notification rule added with notify rule add", notifyRuleCmd("remove")},
		{"notify rule disable", "NAME", "stop a notification rule, keeping it", notifyRuleCmd("disable")},
		{"notify rule enable", "NAME", "put a disabled notification rule in force again", notifyRuleCmd("enable")},
		{"notify deliveries", "", "the notifications' delivery log: rule, channel, attempts, how it ended", cmdNotifyDeliveries},
		{"backup", "FILE", "write a consistent copy of the site database to FILE", cmdBackup},
	}
}

// run is latch without the process around it: it picks the command from
// args, runs it until it ends or ctx ends, and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	if len(args) == 0 {
		printUsage(stderr)
		return 2
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		printUsage(stdout)
		return 0
	}
	cmd, rest, ok := findCommand(args)
	if !ok {
		fmt.Fprintf(stderr, "latch: unknown command %q (latch help lists them)\n", strings.Join(args[:min(2, len(args))], " "))
		return 2
	}
	err := cmd.run(ctx, e, rest)
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	// One line, even for several errors joined.
	fmt.Fprintf(stderr, "latch %s: %s\n", cmd.name, strings.ReplaceAll(err.Error(), "\n", "; "))
	if _, ok := errors.AsType[*usageError](err); ok {
		return 2
	}
	return 1
}

// findCommand matches the command words at the start of args.
func findCommand(args []string) (command, []string, bool) {
	for _, c := range commands() {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.name {
			return c, args[len(words):], true
		}
	}
	return command{}, nil, false
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: latch COMMAND [flags]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  latch %s %s\n        %s\n", c.name, c.usage, c.help)
	}
	fmt.Fprintln(w, "\nclient commands take --socket PATH (default $LATCH_SOCKET, else "+defaultSocket+") and --json.")
}

// newFlags returns a flag set for a command whose errors reach the caller
// as usage errors, printed as one line by run.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("latch "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args with flags and positional arguments in any
// order (`latch pin set alice --uid 04A1B2C3`) and returns the positional
// ones. It checks that there are exactly nargs of them (-1: any number).
func parseFlags(e *env, fs *flag.FlagSet, args []string, nargs int, names ...string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(e.stdout)
				fs.PrintDefaults()
				return nil, err
			}
			return nil, &usageError{msg: err.Error()}
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if nargs >= 0 && len(pos) != nargs {
		if len(pos) > nargs {
			return nil, usagef("unexpected argument %q", pos[nargs])
		}
		return nil, usagef("missing %s", strings.Join(names[len(pos):], " "))
	}
	return pos, nil
}
