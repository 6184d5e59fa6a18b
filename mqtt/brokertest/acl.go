package brokertest

import "strings"

// ACL returns the content of mosquitto's acl_file for a site, as
// docs/mqtt.md configures it: each door (logged in as its door id) reads
// its own topics and the site's key chain, and writes only its own
// events, status and sync requests; the user "site" may do anything under
// the site's root.
func ACL(site string) string {
	const acl = `pattern read latch/v2/SITE/keys
pattern read latch/v2/SITE/door/%u/acl
pattern read latch/v2/SITE/door/%u/heartbeat
pattern read latch/v2/SITE/door/%u/cmd
pattern read latch/v2/SITE/door/%u/events/ack
pattern write latch/v2/SITE/door/%u/events
pattern write latch/v2/SITE/door/%u/status
pattern write latch/v2/SITE/door/%u/sync

user site
topic readwrite latch/v2/SITE/#
`
	return strings.ReplaceAll(acl, "SITE", site)
}
