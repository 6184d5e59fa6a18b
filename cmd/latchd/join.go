package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/latchdoor/latch/mqtt"
)

// joinFile is what a simulated door needs to join a running site
// (latchd -sim -join FILE): the file `latch serve -dev` writes. See
// "Join a site" in docs/config.md.
type joinFile struct {
	Broker      string            `json:"broker"`       // tcp://host:port or ssl://host:port
	Site        string            `json:"site"`         // the site id of the topic root
	TrustedKeys map[string]string `json:"trusted_keys"` // kid → base64 Ed25519 public key of the site
	Username    string            `json:"username"`     // broker login (optional)
	Password    string            `json:"password"`     // with username
}

// maxJoinFile bounds the join file: a few keys and a URL.
const maxJoinFile = 64 << 10

// loadJoinFile reads and checks the join file at path; an error names the
// file and what is wrong with it.
func loadJoinFile(path string) (*joinFile, error) {
	return loadFile("-join", path, maxJoinFile, parseJoinFile)
}

// parseJoinFile decodes a join file strictly (one JSON object, no unknown
// fields) and checks it: the broker URL, the site id, the site's keys,
// and that a password comes with a user name.
func parseJoinFile(b []byte) (*joinFile, error) {
	if len(b) > maxJoinFile {
		return nil, fmt.Errorf("over %d bytes", maxJoinFile)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var j joinFile
	if err := dec.Decode(&j); err != nil {
		return nil, fmt.Errorf("not a join file (JSON with broker, site, trusted_keys): %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("not a join file: data after the JSON object")
	}
	switch u, _, err := parseBrokerURL(j.Broker); {
	case j.Broker == "":
		return nil, errors.New("broker: missing")
	case err != nil:
		return nil, fmt.Errorf("broker %q: %w", j.Broker, err)
	case u.Scheme != "tcp" && u.Scheme != "ssl":
		return nil, fmt.Errorf("broker %q: scheme %q, want tcp:// or ssl://", j.Broker, u.Scheme)
	}
	if err := mqtt.CheckID("site", j.Site); err != nil {
		return nil, err
	}
	if len(j.TrustedKeys) == 0 {
		return nil, errors.New("trusted_keys: the site's public key is missing")
	}
	for _, kid := range slices.Sorted(maps.Keys(j.TrustedKeys)) {
		// The error names the key.
		if _, err := mqtt.ParsePublicKeys(map[string]string{kid: j.TrustedKeys[kid]}); err != nil {
			return nil, fmt.Errorf("trusted_keys: %w", err)
		}
	}
	if j.Password != "" && j.Username == "" {
		return nil, errors.New("password: set without username")
	}
	return &j, nil
}

// joinAdmin answers the prompt's site commands of a door that joined a
// site: the site is elsewhere, and its admin gives them there.
func joinAdmin(door string) siteAdmin {
	return func(_ context.Context, c simCmd) error {
		var at string
		switch c.op {
		case opUnlock:
			at = fmt.Sprintf("latch door unlock %s --for %s", door, c.dur)
		case opLockdown:
			at = fmt.Sprintf("latch door lockdown %s %s", door, map[bool]string{true: "on", false: "off"}[c.on])
		case opRevoke:
			at = fmt.Sprintf("latch revoke --uid %X --reason REASON", c.uid)
		default:
			at = fmt.Sprintf("latch reinstate --uid %X", c.uid)
		}
		return fmt.Errorf("this door joined a site that runs elsewhere: use %s at the site", at)
	}
}
