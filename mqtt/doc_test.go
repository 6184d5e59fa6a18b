package mqtt

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The examples in docs/mqtt.md are real messages: signed ones verify under
// the key the page names, door messages decode, and every kind has one.
func TestDocExamples(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "mqtt.md"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ParsePublicKeys(map[string]string{"site-2026": "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="})
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier("hq", keys)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[Kind]int{}
	blocks := strings.Split(string(b), "```json\n")[1:]
	for i, blk := range blocks {
		ex := []byte(strings.TrimSpace(blk[:strings.Index(blk, "```")]))
		var probe struct {
			Sig  string `json:"sig"`
			Type Kind   `json:"type"`
		}
		if err := json.Unmarshal(ex, &probe); err != nil {
			t.Fatalf("example %d: %v\n%s", i, err, ex)
		}
		if probe.Sig != "" {
			m, _, err := v.Open(ex)
			if err != nil {
				t.Fatalf("example %d: %v", i, err)
			}
			if c, ok := m.(*SnapshotChunk); ok {
				a := assembler{maxBytes: 1 << 20}
				if snap, err := a.add(c, len(ex), t0); err != nil || snap == nil {
					t.Fatalf("example %d: one-chunk snapshot: %v %v", i, snap, err)
				}
			}
			seen[m.Kind()]++
			continue
		}
		switch probe.Type {
		case KindEvent:
			_, err = DecodeEvent(ex, "hq", "front")
		case KindStatus:
			_, err = DecodeStatus(ex, "hq", "front")
		case KindSync:
			_, err = DecodeSyncRequest(ex, "hq", "front")
		default:
			t.Fatalf("example %d: type %q", i, probe.Type)
		}
		if err != nil {
			t.Fatalf("example %d: %v", i, err)
		}
		seen[probe.Type]++
	}
	for _, k := range []Kind{KindDelta, KindSnapshot, KindHeartbeat, KindCommand, KindEventsAck, KindEvent, KindStatus, KindSync} {
		if seen[k] == 0 {
			t.Errorf("docs/mqtt.md has no example of %s", k)
		}
	}
}
